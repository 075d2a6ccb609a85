"""Leave-one-out scores of starter recipes over seeds, from the starter records (issue 29).

    .venv/bin/python bench/loro_seeds.py 8ep-epyc 8ep-colour0.2 [--zooms z20 z21]

Each argument names a recipe by its runs' tag (``scripts/make_starter_model.py --tag=-TAG``,
without the dash): its runs are the records ``docs/benchmarks/starter/loro_<place><tag>.json`` and
``loro_<place><tag>-seed<N>.json``. For each place left out and zoom, prints every run's
building F1 and pixel IoU and their mean, per recipe, then the paired differences (same
place, zoom and seed) of each recipe against the first, as a Markdown table. Reads the
records only: no training, no detection.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "benchmarks" / "starter"
SEED = re.compile(r"-seed(\d+)$")


def runs(tag: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The recipe's records by (place left out, seed)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(RECORDS.glob("loro_*.json")):
        name = path.stem
        match = SEED.search(name)
        seed = int(match.group(1)) if match else 0
        base = name[: match.start()] if match else name
        record = json.loads(path.read_text())
        if base == f"loro_{record['left_out']}{tag}":
            found[(record["left_out"], seed)] = record
    return found


def table(tags: list[str], zooms: list[str]) -> str:
    """Markdown: per place and zoom, each recipe's runs and mean, and paired differences."""
    recipes = {tag: runs(tag) for tag in tags}
    places = sorted({place for found in recipes.values() for place, _ in found})
    head = ["place left out", "zoom"] + [f"`{t}` building F1 (seeds); pixel IoU" for t in tags]
    head += [f"`{t}` - `{tags[0]}` (paired)" for t in tags[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    pairs: dict[str, list[float]] = {t: [] for t in tags[1:]}
    for place in places:
        for zoom in zooms:
            cells = [place, zoom]
            for tag in tags:
                got = {
                    s: r[zoom]["scores"]
                    for (p, s), r in recipes[tag].items()
                    if p == place and zoom in r
                }
                if not got:
                    cells.append("-")
                    continue
                f1 = [got[s]["object_f1"] for s in sorted(got)]
                iou = [got[s]["pixel_iou"] for s in sorted(got)]
                each = " / ".join(f"{v:.3f}" for v in f1)
                cells.append(f"**{statistics.mean(f1):.3f}** ({each}); {statistics.mean(iou):.3f}")
            for tag in tags[1:]:
                diffs = [
                    r[zoom]["scores"]["object_f1"]
                    - recipes[tags[0]][(p, s)][zoom]["scores"]["object_f1"]
                    for (p, s), r in sorted(recipes[tag].items())
                    if p == place and zoom in r and zoom in recipes[tags[0]].get((p, s), {})
                ]
                pairs[tag] += diffs
                cells.append(" / ".join(f"{d:+.3f}" for d in diffs) or "-")
            lines.append("| " + " | ".join(cells) + " |")
    for tag, diffs in pairs.items():
        if diffs:
            above = sum(d > 0 for d in diffs)
            lines.append(
                f"\nPaired differences `{tag}` - `{tags[0]}`: mean {statistics.mean(diffs):+.3f}"
                f" over {len(diffs)} (place, zoom, seed) pairs, {above} above 0."
            )
    return "\n".join(lines)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tags", nargs="+", help="Recipes by tag; the first is the baseline.")
    parser.add_argument("--zooms", nargs="+", default=["z19", "z20", "z21"])
    args = parser.parse_args()
    tags = [tag if tag.startswith("-") else f"-{tag}" for tag in args.tags]
    print(table(tags, args.zooms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
