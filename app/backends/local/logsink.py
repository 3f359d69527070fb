"""Where a job's output goes: the log file the API serves, and the metrics scraped from it live."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from app.backends.local import regex_worker
from app.backends.local.contract import MetricRule
from app.backends.local.files import MAX_LINE_BYTES, now, to_iso
from app.backends.local.scraping import OffLoopScraper

# An epoch/step/iteration counter on the same line gives the step of the values on it.
STEP = re.compile(r"(?i)\b(?:epoch|(?:global_)?step|iter|iteration)\b\s*[:=#]?\s*(\d+)")
TAIL_LINES = 20


class MetricScraper:
    """Turns metric values found on log lines into points (name, value, step), as SageMaker."""

    def __init__(self, rules: Sequence[MetricRule]) -> None:
        self.rules = list(rules)
        self._patterns = [re.compile(rule.regex) for rule in rules]
        self._counts: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def scan(self, line: str) -> list[tuple[str, float, int]]:
        """The points in one line, matched in this process (no time limit: trusted rules)."""
        found = {i: regex_worker.values(p, line) for i, p in enumerate(self._patterns)}
        return self.record(line, found)

    def record(self, line: str, found: dict[int, list[float]]) -> list[tuple[str, float, int]]:
        """The points of the values each rule (by index) found on ``line``, in rule order."""
        # The step is the line's epoch/step counter, else the running count of that metric.
        if not any(found.values()):
            return []
        counter = STEP.search(line)
        points: list[tuple[str, float, int]] = []
        for index in sorted(found):
            name = self.rules[index].name
            for value in found[index]:
                self._counts[name] = self._counts.get(name, 0) + 1
                step = int(counter.group(1)) if counter else self._counts[name]
                self.last[name] = value
                points.append((name, value, step))
        return points


class LogSink:
    """Splits host output into lines, appends them to the log, scrapes the leader's metrics."""

    def __init__(
        self,
        job_dir: Path,
        rules: Sequence[MetricRule],
        prefixed: bool,
        regex_timeout_s: float = 1.0,
    ) -> None:
        (job_dir / "logs").mkdir(exist_ok=True)
        self._log: BinaryIO = (job_dir / "logs" / "output.log").open("ab")
        self._metrics: BinaryIO = (job_dir / "metrics.jsonl").open("ab")
        self._prefixed = prefixed
        self._partial: dict[str, bytes] = {}
        self.scraper = MetricScraper(rules)
        # User regexes run in a child process the loop that enforces stop and runtime can kill.
        self._off_loop = OffLoopScraper(
            [(rule.name, rule.regex) for rule in rules],
            regex_timeout_s,
            self._matched,
            self._scraper_note,
        )
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
        """Make what was written visible to readers; collect what the scraper found meanwhile."""
        self._off_loop.poll()
        self._log.flush()
        self._metrics.flush()

    def finish_scraping(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the scraper to catch up, then stop it."""
        self._off_loop.drain(timeout)
        self._off_loop.close()
        self.flush()

    def helper_pids(self) -> set[int]:
        """Processes the sink runs itself (not the job's)."""
        pid = self._off_loop.pid
        return set() if pid is None else {pid}

    def close(self) -> None:
        """Stop the scraper; flush and close both files."""
        self._off_loop.close()
        self._log.close()
        self._metrics.close()

    def _line(self, host: str, raw: bytes, *, scrape: bool) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        self._write(f"[{host}] {text}" if self._prefixed else text)
        if scrape:
            self._off_loop.submit(text, to_iso(now()))

    def _matched(self, text: str, stamp: str, found: dict[int, list[float]]) -> None:
        for name, value, step in self.scraper.record(text, found):
            point = {"name": name, "value": value, "step": step, "timestamp": stamp}
            self._metrics.write((json.dumps(point) + "\n").encode())

    def _scraper_note(self, text: str) -> None:
        self.note(text)

    def _write(self, text: str) -> None:
        self.tail.append(text)
        self._log.write(text.encode() + b"\n")
