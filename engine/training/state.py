"""The state of a training run: history, best epoch, decision threshold, and checkpoints.

Validation collects a :class:`ProbabilityHistogram` of the building probability of valid
pixels (100 bins, positives and negatives apart): the confusion counts at any threshold
``k / 100`` follow from it, so the threshold that maximises IoU is chosen without keeping
predictions. A checkpoint (``torch.save`` of tensors, lists and numbers only; read back with
``weights_only=True``) holds the model, optimiser, scheduler, scaler, random states, history
and the best epoch's weights and histogram.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.config import TrainConfig
from engine.errors import ConfigError, ModelFileError
from engine.geo.outputs import atomic_output
from engine.scoring.metrics import ConfusionCounts
from engine.training.postprocess import ValidationWindows

CHECKPOINT_FORMAT = "footprint-checkpoint"
#: Settings a resumed run must share with the checkpoint.
RESUME_KEYS = (
    "architecture",
    "encoder",
    "decoder_attention",
    "decoder_channels",
    "tile_size",
    "optimizer",
)
#: Values of run settings added after checkpoints were first written, for older checkpoints.
LATER_KEYS: dict[str, Any] = {"decoder_channels": ()}
#: More settings that must match when the schedule depends on the number of steps.
SCHEDULE_KEYS = ("schedule", "epochs", "batch_size")


class ProbabilityHistogram:
    """Counts of valid pixels per probability bin, for building and non-building pixels."""

    BINS = 100

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.pos = torch.zeros(self.BINS, dtype=torch.int64, device=device)
        self.neg = torch.zeros(self.BINS, dtype=torch.int64, device=device)

    def add(self, prob: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> None:
        """Add probabilities ``prob`` of pixels whose label is ``truth`` where ``valid``."""
        bins = (prob.detach().float() * self.BINS).long().clamp_(0, self.BINS - 1)
        self.pos += torch.bincount(bins[truth & valid], minlength=self.BINS)
        self.neg += torch.bincount(bins[~truth & valid], minlength=self.BINS)

    def counts(self, threshold: float) -> ConfusionCounts:
        """Pixel counts when probabilities >= ``threshold`` are called building."""
        k = min(max(round(threshold * self.BINS), 0), self.BINS)
        tp, fp = int(self.pos[k:].sum()), int(self.neg[k:].sum())
        return ConfusionCounts(
            tp=tp, fp=fp, fn=int(self.pos.sum()) - tp, tn=int(self.neg.sum()) - fp
        )

    def best_threshold(self) -> float:
        """The threshold in 0.01-0.99 with the highest IoU (ties: the one nearest 0.5).

        Without any building pixel every threshold scores alike; 0.5 is returned then.
        """
        if int(self.pos.sum()) == 0:
            return 0.5
        candidates = [k / self.BINS for k in range(1, self.BINS)]
        return max(candidates, key=lambda t: (self.counts(t).iou, -abs(t - 0.5)))

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for a checkpoint."""
        return {"pos": self.pos.cpu(), "neg": self.neg.cpu()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> ProbabilityHistogram:
        """Rebuild from :meth:`state`."""
        hist = cls()
        hist.pos, hist.neg = state["pos"].clone(), state["neg"].clone()
        return hist


class TrainState:
    """Epochs done, their records, and the best epoch's weights and histogram."""

    def __init__(self) -> None:
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.best_iou = -1.0
        self.best_state: dict[str, torch.Tensor] = {}
        self.best_hist: ProbabilityHistogram | None = None
        self.best_windows: ValidationWindows | None = None  # not kept in checkpoints

    @property
    def criterion(self) -> str:
        """What chooses the best epoch: building F1 when it is measured, else IoU."""
        if self.history and "val_building_f1" in self.history[-1]:
            return "building F1"
        return "IoU"

    def add_epoch(
        self,
        record: dict[str, float],
        model: torch.nn.Module,
        hist: ProbabilityHistogram,
        windows: ValidationWindows | None = None,
    ) -> None:
        """Record an epoch; keep its weights (and the building histogram;
        the validation windows of a separation model) when it is the best so far: by
        validation building F1 (ties: IoU) when measured, else by validation IoU."""
        self.epoch = int(record["epoch"])
        self.history.append(record)
        key = ("val_building_f1", "val_iou") if "val_building_f1" in record else ("val_iou",)
        score = tuple(float(record[k]) for k in key)
        best = (
            tuple(float(self.history[self.best_epoch - 1].get(k, -1.0)) for k in key)
            if self.best_epoch
            else (-1.0,) * len(key)
        )
        if score > best:
            self.best_epoch, self.best_iou = self.epoch, float(record["val_iou"])
            self.best_windows = windows
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best_hist = ProbabilityHistogram.from_state(hist.state())

    def choose_threshold(self, threshold: float | None = None) -> tuple[float, dict[str, float]]:
        """The IoU-maximising threshold of the best epoch (or ``threshold``) and the scores
        there."""
        if self.best_hist is None:
            raise ConfigError("No epoch was trained; set epochs >= 1.")
        if threshold is None:
            threshold = self.best_hist.best_threshold()
        record = self.history[self.best_epoch - 1] if self.history else {}
        metrics = dict(self.best_hist.counts(threshold).scores())
        metrics["iou_at_0.5"] = self.best_hist.counts(0.5).iou
        for key in ("train_loss", "val_loss"):
            if key in record:
                metrics[key] = float(record[key])
        return threshold, metrics

    def state(self) -> dict[str, Any]:
        """Everything but the live training objects, for a checkpoint."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_iou": self.best_iou,
            "best_state": self.best_state,
            "best_hist": self.best_hist.state() if self.best_hist else None,
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> TrainState:
        """Rebuild from :meth:`state`."""
        state = cls()
        state.epoch, state.history = int(raw["epoch"]), list(raw["history"])
        state.best_epoch, state.best_iou = int(raw["best_epoch"]), float(raw["best_iou"])
        state.best_state = dict(raw["best_state"])
        if raw["best_hist"] is not None:
            state.best_hist = ProbabilityHistogram.from_state(raw["best_hist"])
        return state


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and random."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global random states, as tensors, numbers and tuples."""
    name, keys, pos, has_gauss, cached = tuple(np.random.get_state(legacy=True))
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(np.asarray(keys, np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def _run_settings(config: TrainConfig, classes: tuple[str, ...]) -> dict[str, Any]:
    keys = RESUME_KEYS + (SCHEDULE_KEYS if config.schedule.lower() != "constant" else ())
    return {**{k: getattr(config, k) for k in keys}, "classes": list(classes)}


def save_checkpoint(path: Path, state: TrainState, loop: Any) -> None:
    """Write the run's state after an epoch (atomically, replacing the previous one)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": 1,
        "run": _run_settings(loop.config, loop.classes),
        "state": state.state(),
        "model": loop.bare.state_dict(),
        "averaged": loop.averaged.state_dict() if loop.averaged is not None else None,
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "scaler": loop.scaler.state_dict(),
        "rng": rng_state(),
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str, config: TrainConfig, loop: Any) -> TrainState:
    """Restore ``loop`` (model, optimiser, scheduler, scaler) and random states from ``path``.

    Raises:
        ModelFileError: missing or unreadable file, or not a training checkpoint.
        ConfigError: the checkpoint was made with other settings.
    """
    file = Path(path).expanduser()
    hint = "give the checkpoint.pt from the report folder of an interrupted run"
    if not file.is_file():
        raise ModelFileError(f"Checkpoint {file} does not exist; {hint}.")
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        from engine.models.registry import short_reason

        raise ModelFileError(
            f"{file} is not a readable checkpoint ({short_reason(err)}); {hint}."
        ) from err
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{file} is not a Footprint training checkpoint; {hint}.")
    wanted = _run_settings(config, loop.classes)
    saved = {**LATER_KEYS, **raw["run"]}
    differ = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if differ:
        text = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differ.items())
        raise ConfigError(
            f"Checkpoint {file} was made with other settings ({text}); resume with the same"
            " settings, or start a new run without --resume."
        )
    loop.bare.load_state_dict(raw["model"])
    if loop.averaged is not None:
        if raw.get("averaged") is not None:
            loop.averaged.load_state_dict(raw["averaged"])
        else:  # averaging starts here: from the resumed weights
            loop.averaged.module.load_state_dict(raw["model"])
    loop.optimizer.load_state_dict(raw["optimizer"])
    loop.scheduler.load_state_dict(raw["scheduler"])
    loop.scaler.load_state_dict(raw["scaler"])
    set_rng_state(raw["rng"])
    return TrainState.from_state(raw["state"])
