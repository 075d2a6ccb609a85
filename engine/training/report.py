"""The training report: ``history.json``, ``summary.json`` and plots of loss and scores.

``history.json`` is a list with one object per epoch: ``epoch``, ``train_loss``,
``val_loss``, ``val_precision``, ``val_recall``, ``val_f1``, ``val_iou``, ``val_accuracy``
(validation scores at threshold 0.5), ``val_building_f1`` (models with a separation class:
buildings matched one-to-one at IoU >= 0.5 with fixed seeds + watershed settings), ``lr`` (at
the epoch's start) and ``seconds``.
``summary.json`` holds the run's result (best epoch, threshold, scores, data summary).
Plots are drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.geo.outputs import atomic_output

#: Validation scores drawn in ``metrics.png``.
SCORES = ("val_precision", "val_recall", "val_f1", "val_iou", "val_accuracy")


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, value: Any) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(_json_safe(value), indent=2, default=str) + "\n")
    return path


def _figure(title: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # a bare Figure draws with Agg; no pyplot, no GUI
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, path: Path) -> Path:
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def _column(history: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) is not None else math.nan for r in history]


def plot_loss(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training and validation loss per epoch, with the learning rate on a second axis."""
    fig, ax = _figure("Loss")
    epochs = _column(history, "epoch")
    ax.plot(epochs, _column(history, "train_loss"), marker="o", label="training loss")
    ax.plot(epochs, _column(history, "val_loss"), marker="o", label="validation loss")
    ax.set_ylabel("loss")
    lr = ax.twinx()
    lr.plot(epochs, _column(history, "lr"), color="grey", linestyle=":", label="learning rate")
    lr.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    more = lr.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right")
    return _save(fig, path)


def plot_metrics(
    history: Sequence[dict[str, Any]], path: Path, best_epoch: int | None = None
) -> Path:
    """Validation precision, recall, F1, IoU and accuracy per epoch, and building F1 where
    measured; the best epoch marked."""
    fig, ax = _figure("Validation scores (threshold 0.5)")
    epochs = _column(history, "epoch")
    for key in SCORES:
        ax.plot(epochs, _column(history, key), marker="o", label=key.removeprefix("val_"))
    if history and "val_building_f1" in history[-1]:
        ax.plot(
            epochs,
            _column(history, "val_building_f1"),
            marker="s",
            color="black",
            label="building F1 (seeds + watershed)",
        )
    if best_epoch:
        ax.axvline(best_epoch, color="black", linestyle="--", label=f"best epoch {best_epoch}")
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("score")
    ax.legend(loc="lower right")
    return _save(fig, path)


def write_history(report_dir: Path, history: Sequence[dict[str, Any]]) -> Path:
    """Write ``history.json``."""
    return write_json(Path(report_dir) / "history.json", list(history))


def write_report(
    report_dir: str | Path, history: Sequence[dict[str, Any]], summary: dict[str, Any]
) -> list[Path]:
    """Write ``history.json``, ``summary.json``, ``loss.png`` and ``metrics.png``.

    Args:
        report_dir: the folder (created if missing).
        history: one record per epoch (see the module docstring).
        summary: the run's result; its ``best_epoch`` is marked on the score plot.
    """
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    best = summary.get("best_epoch")
    return [
        write_history(folder, history),
        write_json(folder / "summary.json", summary),
        plot_loss(history, folder / "loss.png"),
        plot_metrics(history, folder / "metrics.png", int(best) if best else None),
    ]
