"""Applies metric regexes to log lines in a process of its own, so a supervisor can kill it.

Run as a plain script (``python -I -S regex_worker.py RULES_JSON``), importing only the
standard library. Reads one JSON array per line, ``[seq, text, [rule, ...]]``; after each rule
writes ``[seq, rule, [value, ...]]``, and ``[seq, -1, []]`` once the line is done. A regex that
never finishes leaves the last rule unanswered: the supervisor measures that and gives up on it.
"""

import json
import math
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
    for raw in sys.stdin:
        seq, text, rules = json.loads(raw)
        for rule in rules:
            out.write(json.dumps([seq, rule, values(patterns[rule], text)]) + "\n")
            out.flush()
        out.write(json.dumps([seq, -1, []]) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
