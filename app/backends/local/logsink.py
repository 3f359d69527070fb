"""Where a job's output goes: the log file the API serves, and the metrics scraped from it live."""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from app.backends.local.contract import MetricRule
from app.backends.local.files import MAX_LINE_BYTES, now, to_iso

# An epoch/step/iteration counter on the same line gives the step of the values on it.
STEP = re.compile(r"(?i)\b(?:epoch|(?:global_)?step|iter|iteration)\b\s*[:=#]?\s*(\d+)")
TAIL_LINES = 20


class MetricScraper:
    """Applies metric definitions (first group = value) to log lines, as SageMaker does."""

    def __init__(self, rules: Sequence[MetricRule]) -> None:
        self._rules = [(rule.name, re.compile(rule.regex)) for rule in rules]
        self._counts: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def scan(self, line: str) -> list[tuple[str, float, int]]:
        """The (name, value, step) points in one line."""
        # The step is the line's epoch/step counter, else the running count of that metric.
        if not self._rules:
            return []
        counter = STEP.search(line)
        points: list[tuple[str, float, int]] = []
        for name, pattern in self._rules:
            for match in pattern.finditer(line):
                try:
                    value = float(match.group(1))
                except (TypeError, ValueError, IndexError):
                    continue
                if not math.isfinite(value):
                    continue
                self._counts[name] = self._counts.get(name, 0) + 1
                step = int(counter.group(1)) if counter else self._counts[name]
                self.last[name] = value
                points.append((name, value, step))
        return points


class LogSink:
    """Splits host output into lines, appends them to the log, scrapes the leader's metrics."""

    def __init__(self, job_dir: Path, rules: Sequence[MetricRule], prefixed: bool) -> None:
        (job_dir / "logs").mkdir(exist_ok=True)
        self._log: BinaryIO = (job_dir / "logs" / "output.log").open("ab")
        self._metrics: BinaryIO = (job_dir / "metrics.jsonl").open("ab")
        self._prefixed = prefixed
        self._partial: dict[str, bytes] = {}
        self.scraper = MetricScraper(rules)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, host: str, data: bytes, *, scrape: bool) -> None:
        """Take a chunk of a host's output; complete lines are written now, the rest waits."""
        buffer = self._partial.get(host, b"") + data
        *complete, rest = buffer.split(b"\n")
        while len(rest) >= MAX_LINE_BYTES:  # no newline in sight: cut, so memory stays bounded
            complete.append(rest[:MAX_LINE_BYTES])
            rest = rest[MAX_LINE_BYTES:]
        self._partial[host] = rest
        for raw in complete:
            self._line(host, raw, scrape=scrape)

    def finish(self, host: str, *, scrape: bool) -> None:
        """The host's output ended: write what is left of its last line."""
        rest = self._partial.pop(host, b"")
        if rest:
            self._line(host, rest, scrape=scrape)

    def note(self, text: str) -> None:
        """A line from Stratus itself, marked so it is not mistaken for the script's output."""
        self._write(f"[stratus] {text}")

    def flush(self) -> None:
        """Make what was written visible to readers."""
        self._log.flush()
        self._metrics.flush()

    def close(self) -> None:
        """Flush and close both files."""
        self._log.close()
        self._metrics.close()

    def _line(self, host: str, raw: bytes, *, scrape: bool) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        self._write(f"[{host}] {text}" if self._prefixed else text)
        if not scrape:
            return
        stamp = to_iso(now())
        for name, value, step in self.scraper.scan(text):
            point = {"name": name, "value": value, "step": step, "timestamp": stamp}
            self._metrics.write((json.dumps(point) + "\n").encode())

    def _write(self, text: str) -> None:
        self.tail.append(text)
        self._log.write(text.encode() + b"\n")
