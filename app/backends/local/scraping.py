"""Metric regexes applied off the supervisor's loop, with a time budget per rule and line.

Python's ``re`` holds the interpreter while it matches, so a catastrophic pattern (``(a+)+$``
on a long line of a's) in the supervisor would stall stop handling and the runtime limit. The
rules run in ``regex_worker`` instead; this side only exchanges lines over non-blocking pipes.
A rule that spends more than its budget of CPU on one line is disabled (with a note in the
job's log), the worker is killed and restarted, and scraping goes on with the other rules.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.backends.local import procs

WORKER = Path(__file__).with_name("regex_worker.py")
MAX_QUEUED_LINES = 10_000  # a backlog past this is not scanned (the log keeps every line)
MAX_QUEUED_BYTES = 16 * 1024 * 1024
SEND_CHUNK = 64 * 1024
WALL_FACTOR = 30  # a worker that makes no progress for this many budgets of wall time is stuck
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Found = dict[int, list[float]]


@dataclass
class _Line:
    seq: int
    text: str
    stamp: str
    rules: list[int]  # still to apply, in order
    found: Found = field(default_factory=dict)
    careful: bool = False  # answered rule by rule: it was in flight when the worker stalled


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class OffLoopScraper:
    """Feeds log lines to a killable regex worker; hands back what each line matched."""

    def __init__(
        self,
        rules: list[tuple[str, str]],
        budget_s: float,
        on_found: Callable[[str, str, Found], None],
        on_note: Callable[[str], None],
    ) -> None:
        self._names = [name for name, _ in rules]
        self._regexes = [regex for _, regex in rules]
        self._enabled = list(range(len(rules)))
        self._budget = budget_s
        self._on_found = on_found
        self._on_note = on_note
        self._pending: deque[_Line] = deque()
        self._inflight: deque[_Line] = deque()
        self._queued_bytes = 0
        self._seq = 0
        self._dropped = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin = self._stdout = -1
        self._out = bytearray()
        self._in = bytearray()
        self._mark_cpu = 0.0
        self._mark_wall = 0.0

    @property
    def pid(self) -> int | None:
        """The worker's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    def submit(self, text: str, stamp: str) -> None:
        """Queue one line; dropped (and counted) when the worker has fallen too far behind."""
        if not self._enabled:
            return
        backlog = len(self._pending) + len(self._inflight)
        if backlog >= MAX_QUEUED_LINES or self._queued_bytes >= MAX_QUEUED_BYTES:
            self._dropped += 1
            if self._dropped == 1:
                self._on_note("metric scraping fell behind the log; some lines are not scanned")
            return
        self._seq += 1
        self._pending.append(_Line(self._seq, text, stamp, list(self._enabled)))
        self._queued_bytes += len(text)

    def poll(self) -> None:
        """Collect results, give up on a rule over its budget, send more lines; never blocks."""
        if self._proc is not None:
            self._read()
            self._check_budget()
        if self._pending:
            self._send()

    def drain(self, timeout: float) -> None:
        """Poll until every queued line is scanned or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while (self._pending or self._inflight) and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.005)
        left = len(self._pending) + len(self._inflight) + self._dropped
        if left:
            self._on_note(f"{left} log line(s) were not scanned for metrics")
        self._pending.clear()
        self._inflight.clear()
        self._dropped = 0

    def close(self) -> None:
        """Stop the worker."""
        self._stop_worker()

    # --- the worker -------------------------------------------------------------------------

    def _start_worker(self) -> None:
        argv = [sys.executable, "-I", "-S", str(WORKER), json.dumps(self._regexes)]
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=procs.die_with_parent,  # the supervisor runs no other thread
        )
        self._stdin = proc.stdin.fileno() if proc.stdin else -1
        self._stdout = proc.stdout.fileno() if proc.stdout else -1
        os.set_blocking(self._stdin, False)
        os.set_blocking(self._stdout, False)
        self._proc = proc
        self._mark()

    def _stop_worker(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        self._out.clear()
        self._in.clear()

    def _mark(self) -> None:
        pid = self.pid
        self._mark_cpu = (_cpu_seconds(pid) if pid else None) or 0.0
        self._mark_wall = time.monotonic()

    def _send(self) -> None:
        if self._proc is None:
            self._start_worker()
        while self._pending and len(self._out) < SEND_CHUNK:
            line = self._pending.popleft()
            line.rules = [r for r in line.rules if r in self._enabled]
            if not line.rules:
                self._done(line)
                continue
            if not self._inflight:
                self._mark()  # the budget counts from when the worker has work
            message = [line.seq, line.text, line.rules, line.careful]
            self._out += (json.dumps(message) + "\n").encode()
            self._inflight.append(line)
        try:
            written = os.write(self._stdin, self._out)
        except BlockingIOError:
            return
        except OSError:  # the worker died; _read notices and starts over
            return
        del self._out[:written]

    def _read(self) -> None:
        progressed = False
        while True:
            try:
                data = os.read(self._stdout, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                self._give_up("stopped unexpectedly")
                return
            self._in += data
        *lines, rest = self._in.split(b"\n")
        self._in = bytearray(rest)
        for raw in lines:
            seq, rule, values = json.loads(raw)
            if not self._inflight or self._inflight[0].seq != seq:
                continue
            progressed = True
            head = self._inflight[0]
            if rule == -1:
                self._inflight.popleft()
                self._done(head)
            else:
                head.found[rule] = values
                with contextlib.suppress(ValueError):
                    head.rules.remove(rule)
        if progressed:
            self._mark()

    def _check_budget(self) -> None:
        if not self._inflight or self.pid is None:
            return
        cpu = _cpu_seconds(self.pid)
        wall = time.monotonic() - self._mark_wall
        over_cpu = cpu is not None and cpu - self._mark_cpu > self._budget
        if over_cpu or wall > self._budget * WALL_FACTOR:
            self._give_up(f"ran longer than {self._budget:g} s on one line")

    def _give_up(self, why: str) -> None:
        """Restart the worker and send what it had again; disable the rule it was stuck on.

        Answers come in batches, so the stuck rule is known only for a line sent ``careful``:
        the first time, the lines in flight are sent again that way; the second time, the rule
        that still does not finish is the culprit.
        """
        head = self._inflight[0] if self._inflight else None
        if head is not None and head.careful and head.rules:
            culprit = head.rules.pop(0)
            if culprit in self._enabled:
                self._enabled.remove(culprit)
                self._on_note(
                    f"metric {self._names[culprit]!r} disabled: its regex {why};"
                    " later lines are not scanned with it"
                )
        for line in self._inflight:
            line.careful = True
        self._stop_worker()
        self._pending.extendleft(reversed(self._inflight))
        self._inflight.clear()

    def _done(self, line: _Line) -> None:
        self._queued_bytes -= len(line.text)
        if any(line.found.values()):
            self._on_found(line.text, line.stamp, line.found)
