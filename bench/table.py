"""The techniques table: each technique measured against the same baseline, from the JSON
records that ``bench/accuracy.py`` wrote to docs/benchmarks/accuracy/.

    .venv/bin/python bench/table.py

Rewrites the part of docs/BENCHMARKS.md between the ``techniques`` markers. Every figure
comes from a record; a row whose record is missing says so instead of showing a number.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "benchmarks" / "accuracy"
DOC = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- techniques:start -->", "<!-- techniques:end -->"

#: (technique, variant, record tag); the first row is the baseline every other row changes.
ROWS: list[tuple[str, str, str]] = [
    (
        "baseline",
        "CPU recipe: compact U-Net, BCE+Dice, 30% of empty windows kept, augmentation,"
        " 256-px windows at half-window stride, blended prediction (margin 64), threshold"
        " from validation",
        "t-base",
    ),
    ("class weighting", "building class weighted 1:6 in BCE (`pos_weight=6`)", "t-posw6"),
    ("loss", "Jaccard+BCE", "t-jaccard"),
    ("loss", "focal", "t-focal"),
    ("empty windows", "all kept (`empty_keep_fraction=1`)", "t-empty-all"),
    ("augmentation", "none (`augment=false`)", "t-noaug"),
    ("prediction", "tiles side by side (`margin=0`)", "t-tiles"),
    ("prediction", "blended, margin 32 (an eighth of the tile)", "t-margin32"),
    ("threshold", "fixed 0.5 instead of the validation choice (0.36)", "t-thr05"),
    ("model", "U-Net resnet18 (lr 1e-3; prediction margin 32)", "t-r18"),
    (
        "model",
        "U-Net resnet18 + scSE decoder attention (lr 1e-3; prediction margin 32)",
        "t-r18-scse",
    ),
    ("model", "U-Net resnet34 (lr 1e-3; prediction margin 32)", "t-r34"),
    ("windows", "128 px", "t-tile128"),
    ("windows", "512 px", "t-tile512"),
    ("stride", "none (windows side by side, `stride=256`)", "t-stride-none"),
    ("touching buildings", "contact class, 1 px each side of a wall, split along it", "t-contact"),
    ("touching buildings", "contact class, 3 px each side (`boundary_width=3`)", "t-contact-w3"),
    (
        "touching buildings",
        "U-Net resnet18 (lr 1e-3) with the 3-px contact class (prediction margin 32):"
        " the default of `train`",
        "t-r18-contact",
    ),
]

#: The single-image fit on the Atlanta sample (train and detect on the same image).
FIT_ROWS: list[tuple[str, str]] = [
    ("10% held out, augmentation, 40 epochs; prediction margin 32", "atlanta-fit"),
    ("10% held out, no augmentation, 120 epochs; margin 16", "atlanta-fit-120"),
    (
        "nothing held out (`val_fraction=0`), no augmentation, 60 epochs; margin 16",
        "atlanta-fit-all",
    ),
    (
        "the same weights, margin 32 (on the model's stride grid: today's default)",
        "atlanta-fit-all-m32",
    ),
    ("the same weights, margin 0 (windows exactly on the training grid)", "atlanta-fit-all-m0"),
]
FIT_START, FIT_END = "<!-- fit:start -->", "<!-- fit:end -->"

#: Pretrained encoders and fine-tuning (issue 14): every row U-Net + contact class, lr 1e-3,
#: 8 epochs (fewer than the recipe's 15, the same for every row), on the same test chips.
PRETRAINED_ROWS: list[tuple[str, str, str]] = [
    ("former default", "resnet18 from random weights, 32 training chips", "p-r18-8ep"),
    ("EfficientNet-Lite0", "from random weights, 32 training chips", "p-lite0-8ep"),
    (
        "EfficientNet-Lite0",
        "ImageNet weights (packaged), 32 training chips",
        "p-lite0-imagenet-8ep",
    ),
    ("fine-tuning", "Lite0 ImageNet on the 8 chips of one column (a quarter)", "ft-quarter-8ep"),
    (
        "fine-tuning",
        "that model fine-tuned on the buildings of 2 chips of the rest (`--init-model`,"
        " `--labelled-area` over those chips, encoder frozen 2 epochs)",
        "ft-finetuned-8ep",
    ),
    (
        "fine-tuning",
        "Lite0 ImageNet trained on those 2 chips' buildings alone (`--labelled-area`)",
        "ft-few-alone-8ep",
    ),
]
PRE_START, PRE_END = "<!-- pretrained:start -->", "<!-- pretrained:end -->"

#: Touching buildings (issue 15): every row U-Net Lite0 from ImageNet weights, lr 1e-3,
#: 8 epochs (train's default recipe), on the same test chips.
SEPARATION_ROWS: list[tuple[str, str, str]] = [
    (
        "contact split",
        "contact class (0.4 m each side of a wall) cut out of the buildings; split where"
        " contact >= its validation threshold, then connected pixels (the former default)",
        "s-contact-split",
    ),
    (
        "seeds + watershed",
        "separation class (0.4 m, walls kept in the buildings); seeds fixed at 0.5, no"
        " erosion; best epoch by pixel IoU (the first try)",
        "sep-w04",
    ),
    (
        "seeds + watershed",
        "separation 0.4 m; seed settings chosen on validation by building F1, best epoch by it too",
        "s-w04",
    ),
    ("separation width", "0.8 m each side of a wall", "s-w08"),
    (
        "class weights",
        "separation weighted 3:1 against building in the loss (0.4 m): the default of `train`",
        "s-sw3",
    ),
    ("both", "0.8 m each side and weighted 3:1", "s-w08-sw3"),
]
SEP_START, SEP_END = "<!-- separation:start -->", "<!-- separation:end -->"

COLUMNS = ("pixel_iou", "pixel_f1", "object_precision", "object_recall", "object_f1")


def _load(tag: str) -> dict[str, Any] | None:
    path = RECORDS / f"{tag}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def table() -> str:
    """The markdown table (with its markers)."""
    base = _load(ROWS[0][2])
    lines = [
        START,
        "| technique | variant | pixel IoU | pixel F1 | bldg P | bldg R | bldg F1 |"
        " Δ pixel IoU | Δ bldg F1 | training | detection |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for technique, variant, tag in ROWS:
        rec = _load(tag)
        if rec is None:
            lines.append(f"| {technique} | {variant} | not measured (`{tag}`) |" + " |" * 8)
            continue
        s = rec["scores"]
        cells = [f"{s[k]:.3f}" for k in COLUMNS]
        if base is None or tag == ROWS[0][2]:
            deltas = ["", ""]
        else:
            b = base["scores"]
            deltas = [
                f"{s['pixel_iou'] - b['pixel_iou']:+.3f}",
                f"{s['object_f1'] - b['object_f1']:+.3f}",
            ]
        reused = rec.get("predict") or rec.get("vectorize", {}).get("threshold", -1) != -1
        train = "baseline's weights" if reused else f"{rec['train_s']:.0f} s"
        detect = f"{rec['detect_s']:.1f} s"
        lines.append(" | ".join([f"| {technique}", variant, *cells, *deltas, train, detect]) + " |")
    lines.append(END)
    return "\n".join(lines)


def pretrained_table() -> str:
    """The pretrained-encoder and fine-tuning table (with its markers)."""
    lines = [
        PRE_START,
        "| what | variant | pixel IoU | pixel F1 | bldg P | bldg R | bldg F1 | training |"
        " s / epoch | detection |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for what, variant, tag in PRETRAINED_ROWS:
        rec = _load(tag)
        if rec is None:
            lines.append(f"| {what} | {variant} | not measured (`{tag}`) |" + " |" * 7)
            continue
        cells = [f"{rec['scores'][k]:.3f}" for k in COLUMNS]
        epochs = max(1, int(rec["trained"]["epochs_run"]))
        times = [
            f"{rec['train_s']:.0f} s",
            f"{rec['train_s'] / epochs:.0f}",
            f"{rec['detect_s']:.1f} s",
        ]
        lines.append(" | ".join([f"| {what}", variant, *cells, *times]) + " |")
    lines.append(PRE_END)
    return "\n".join(lines)


def separation_table() -> str:
    """The touching-buildings table (with its markers)."""
    lines = [
        SEP_START,
        "| what | variant | pixel IoU | bldg P | bldg R | bldg F1 | bldg F1, 95% interval |"
        " merges | splits | validation bldg F1 | training | detection |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for what, variant, tag in SEPARATION_ROWS:
        rec = _load(tag)
        if rec is None:
            lines.append(f"| {what} | {variant} | not measured (`{tag}`) |" + " |" * 9)
            continue
        s = rec["scores"]
        spread = rec.get("spread") or {}
        f1 = spread.get("object_f1")
        val = rec["trained"]["metrics"].get("building_f1")
        cells = [
            f"{s['pixel_iou']:.3f}",
            *(f"{s[k]:.3f}" for k in ("object_precision", "object_recall", "object_f1")),
            f"{f1[0]:.3f}-{f1[1]:.3f}" if f1 else "-",
            str(s.get("merges", "-")),
            str(s.get("splits", "-")),
            f"{val:.3f}" if val is not None else "-",
            f"{rec['train_s']:.0f} s",
            f"{rec['detect_s']:.1f} s",
        ]
        lines.append(" | ".join([f"| {what}", variant, *cells]) + " |")
    lines.append(SEP_END)
    return "\n".join(lines)


def fit_table() -> str:
    """The single-image fit table (with its markers)."""
    lines = [
        FIT_START,
        "| run | pixel P | pixel R | pixel F1 | pixel acc | bldg P | bldg R | bldg F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_accuracy")
    keys += ("object_precision", "object_recall", "object_f1")
    for variant, tag in FIT_ROWS:
        rec = _load(tag)
        if rec is None:
            lines.append(f"| {variant} | not measured (`{tag}`) |" + " |" * 6)
            continue
        cells = [f"{rec['scores'][k]:.3f}" for k in keys]
        lines.append(" | ".join([f"| {variant}", *cells]) + " |")
    lines.append(FIT_END)
    return "\n".join(lines)


def _replace(text: str, start: str, end: str, block: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"{DOC} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def main() -> int:
    """Rewrite the techniques and single-image fit tables in docs/BENCHMARKS.md."""
    text = DOC.read_text(encoding="utf-8")
    text = _replace(text, START, END, table())
    text = _replace(text, FIT_START, FIT_END, fit_table())
    text = _replace(text, PRE_START, PRE_END, pretrained_table())
    text = _replace(text, SEP_START, SEP_END, separation_table())
    DOC.write_text(text, encoding="utf-8")
    print(table())
    print(fit_table())
    print(pretrained_table())
    print(separation_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
