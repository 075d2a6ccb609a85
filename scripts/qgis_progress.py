"""Show what ``qgis_process run`` (text mode) prints as it happens, and keep its results.

qgis_process prints an algorithm's messages and its progress ticks (``0...10...20``, glued to the
messages) as the run goes, then a ``Results`` block; ``--json`` prints nothing until the end. So
the main job runs qgis_process in text mode (unbuffered, under ``stdbuf``) through this filter:

    stdbuf -o0 qgis_process run ALG -- ... | python3 scripts/qgis_progress.py RESULTS.json

Messages are echoed as lines, progress as ``[ 40%]`` lines, and the ``Results`` block is written
to RESULTS.json (numbers as numbers). Standard library only (runs in QGIS's Python).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from itertools import chain

TICKS = {str(n) for n in range(0, 101, 10)}
DONE = " - done."
RESULTS_HEADER = "Results"
#: Metric lines the plugin also logs (``val_iou (epoch 3): 0.61``): the epoch line says it all.
METRIC = re.compile(r"^[a-z0-9_]+ \(epoch \d+\): \S+$")


def events(chunks: Iterable[str]) -> Iterator[tuple[str, object]]:
    """``("message", line)`` and ``("progress", percent)`` from qgis_process's text, as it comes.

    qgis_process prints progress as it goes, without newlines: ``0``, then a dot every 2.5 %
    and the percentage every 10 % (``0...10...20``), ``...100 - done.`` at the end; messages
    come whole, each with its newline, so ticks sit at the start of a line, glued to the next
    message (``...20Epoch 2/15: ...``). A number is a tick only right after a dot (or ``0``
    opening a line before a dot), so messages that contain dots and numbers stay whole.
    """
    line, number, after_dot, in_message = "", "", False, False
    done = ""
    for char in chain.from_iterable(chunks):
        if done:  # inside " - done."
            done = done[1:] if char == done[0] else ""
            if done or char == DONE[-1]:
                continue
        if not in_message:
            tick_digit = after_dot or (not number and char == "0")
            if char.isdigit() and tick_digit and len(number) < 3:
                number += char
                continue
            if number:
                opening = number == "0" and not after_dot
                if number in TICKS and (not opening or char == "."):
                    yield "progress", int(number)
                    if number == "100" and char == " ":
                        number, done = "", DONE[1:]
                        continue
                else:
                    line = number  # not a tick after all: the start of a message
                    in_message = True
                number = ""
        if in_message:
            if char == "\n":
                yield "message", line
                line, after_dot, in_message = "", False, False
            else:
                line += char
        elif char == ".":
            after_dot = True
        elif char == "\n":
            yield "message", line
            line, after_dot = "", False
        else:
            line, in_message = char, True
    if number and number in TICKS:
        yield "progress", int(number)
    elif number or line:
        yield "message", number + line


def parse_value(text: str) -> object:
    """A result's value: int, float, or the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def follow(stream: Iterable[str], out: list[str]) -> dict[str, object]:
    """Echo ``stream`` as readable lines into ``out`` (a list, or anything with ``append``)
    and return the Results block as a dictionary."""
    results: dict[str, object] = {}
    in_results, last_percent = False, -1
    for kind, value in events(stream):
        if kind == "progress":
            percent = int(str(value))
            if percent != last_percent:
                out.append(f"  [{percent:3d}%]")
                last_percent = percent
            continue
        line = str(value)
        if METRIC.match(line):
            continue
        if line.strip() == RESULTS_HEADER:
            in_results = True
        if in_results:
            key, sep, rest = line.partition(":")
            if sep and key.isupper():
                results[key] = parse_value(rest.strip())
        out.append(line)
    return results


class _Printer(list[str]):
    def append(self, line: str) -> None:
        print(line, flush=True)


def _chunks(fd: int) -> Iterator[str]:
    while data := os.read(fd, 4096):
        yield data.decode("utf-8", "replace")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = follow(_chunks(sys.stdin.fileno()), _Printer())
    with open(argv[1], "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
