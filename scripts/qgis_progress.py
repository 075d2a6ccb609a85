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

TICK = re.compile(r"\.\.\.(\d{1,3})( - done\.)?")
DONE = " - done."
RESULTS_HEADER = "Results"


def events(chunks: Iterable[str]) -> Iterator[tuple[str, object]]:
    """``("message", line)`` and ``("progress", percent)`` from qgis_process's text, as it comes.

    Ticks are glued to the messages (``0...10Reading...20``), and a chunk may end inside one:
    a tail that may still become a tick waits for the next chunk.
    """
    buffer, line = "", ""
    for chunk in chain(chunks, [None]):
        final = chunk is None
        buffer += chunk or ""
        while buffer:
            if not line and buffer.startswith("0..."):  # the first tick starts a line
                yield "progress", 0
                buffer = buffer[1:]
                continue
            tick = TICK.match(buffer)
            if tick:
                rest = buffer[tick.end() :]
                if not final and (not rest or (not tick.group(2) and DONE.startswith(rest))):
                    break  # more digits or " - done." may follow
                yield "progress", int(tick.group(1))
                buffer = rest
                continue
            maybe_tick = re.fullmatch(r"\.{1,3}", buffer) or (
                not line and "0...".startswith(buffer)
            )
            if maybe_tick and not final:
                break
            if buffer[0] == "\n":
                yield "message", line
                line, buffer = "", buffer[1:]
                continue
            stop = min((i for i in (buffer.find("\n", 1), buffer.find(".", 1)) if i > 0), default=0)
            cut = stop or len(buffer)
            line, buffer = line + buffer[:cut], buffer[cut:]
    if line:
        yield "message", line


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
