"""Applies metric regexes to log lines in a process of its own, so a supervisor can kill it.

Run as a plain script (``python -I -S regex_worker.py RULES_JSON``), importing only the
standard library. Reads one JSON array per line, ``[seq, text, [rule, ...], careful]``, and
answers ``[seq, rule, [value, ...]]`` for each rule that found values, then ``[seq, -1, []]``.
Answers go out in batches, when the input read so far is used up; a ``careful`` line answers
every rule at once, even one that found nothing, so a supervisor that has to kill this process
in the middle of a line knows which rule never finished.
"""

import json
import math
import os
import re
import sys


def values(pattern: "re.Pattern[str]", text: str) -> list[float]:
    """The finite numbers the first group of ``pattern`` captures in ``text``."""
    found = []
    for match in pattern.finditer(text):
        try:
            value = float(match.group(1))
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(value):
            found.append(value)
    return found


def main() -> int:
    """Serve lines from stdin until it closes."""
    patterns = [re.compile(regex) for regex in json.loads(sys.argv[1])]
    out = sys.stdout
    pending = b""
    while chunk := os.read(0, 1 << 16):
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            seq, text, rules, careful = json.loads(raw)
            for rule in rules:
                found = values(patterns[rule], text)
                if found or careful:
                    out.write(json.dumps([seq, rule, found]) + "\n")
                if careful:
                    out.flush()
            out.write(json.dumps([seq, -1, []]) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
