"""Training losses over smp's binary losses, with nodata pixels masked out.

Targets come from :func:`targets_for`, which maps a label mask (0 background, 1 building,
2 separation strip outside buildings, 3 separation strip inside a building (the shared wall),
255 ignore) to one target channel per model output:

* ``"building"`` is 1 on every building pixel (1 and 3), so buildings keep their full
  extent;
* ``"separation"`` is 1 on the whole strip (2 and 3): the pixels with two different
  buildings close by, both sides of a shared wall included; it alone marks where buildings
  part (seeds + watershed, see :mod:`engine.polygons.instances`);
* every channel is invalid (ignored) where the mask is 255.

:func:`build_loss` returns a module called as ``loss(logits, target, valid)``: each named
term is computed per channel in smp's binary mode with ignored pixels excluded, averaged over
channels, and the terms of a sum such as ``"bce+dice"`` are added.
"""

from __future__ import annotations

from collections.abc import Callable

import segmentation_models_pytorch.losses as smp_losses
import torch
from torch import nn

from engine.errors import ConfigError

#: Label value of pixels that take no part in training (nodata, outside the raster).
IGNORE = 255
#: Mask values of each class name.
CLASS_VALUES = {"building": (1, 3), "separation": (2, 3)}


def targets_for(classes: tuple[str, ...], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float targets (N, C, H, W) for the model's ``classes`` and the valid pixels (N, 1, H, W).

    Args:
        classes: the model's output channels, e.g. ``("building",)`` or
            ``("building", "separation")``.
        mask: uint8 labels (N, H, W) or (N, 1, H, W): 0 background, 1 building, 2 and 3 the
            separation strip outside and inside buildings, 255 ignore.

    Raises:
        ConfigError: an unknown class name.
    """
    if mask.dim() == 4:
        mask = mask[:, 0]
    unknown = [c for c in classes if c not in CLASS_VALUES]
    if unknown:
        raise ConfigError(f"Unknown class(es) {unknown}; known: {', '.join(CLASS_VALUES)}.")
    valid = (mask != IGNORE).unsqueeze(1)
    target = torch.stack([_isin(mask, CLASS_VALUES[c]) for c in classes], dim=1).float()
    return target, valid


def _isin(mask: torch.Tensor, values: tuple[int, ...]) -> torch.Tensor:
    """Where ``mask`` holds one of ``values``."""
    out = mask == values[0]
    for v in values[1:]:
        out |= mask == v
    return out


class MaskedBCE(nn.Module):
    """Binary cross-entropy with logits, averaged over valid pixels and channels."""

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.bce = smp_losses.SoftBCEWithLogitsLoss(
            reduction="none", pos_weight=torch.tensor(float(pos_weight))
        )

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Mean BCE over valid pixels."""
        per_pixel: torch.Tensor = self.bce(logits, target) * valid
        return per_pixel.sum() / valid.sum().clamp(min=1) / logits.shape[1]


class PerChannel(nn.Module):
    """A binary-mode smp loss (built with ``ignore_index=IGNORE``) averaged over channels."""

    def __init__(self, term: nn.Module) -> None:
        super().__init__()
        self.term = term

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Mean over channels of the term, ignored pixels labelled ``IGNORE``."""
        labels = target.masked_fill(~valid, IGNORE)
        terms = [
            self.term(logits[:, c : c + 1], labels[:, c : c + 1]) for c in range(logits.shape[1])
        ]
        return torch.stack(terms).mean()


def _terms(pos_weight: float) -> dict[str, Callable[[], nn.Module]]:
    mode = smp_losses.BINARY_MODE
    return {
        "bce": lambda: MaskedBCE(pos_weight),
        "dice": lambda: PerChannel(smp_losses.DiceLoss(mode, ignore_index=IGNORE)),
        "jaccard": lambda: PerChannel(smp_losses.JaccardLoss(mode, ignore_index=IGNORE)),
        "focal": lambda: PerChannel(smp_losses.FocalLoss(mode, ignore_index=IGNORE)),
        "tversky": lambda: PerChannel(smp_losses.TverskyLoss(mode, ignore_index=IGNORE)),
        "lovasz": lambda: PerChannel(smp_losses.LovaszLoss(mode, ignore_index=IGNORE)),
    }


#: Names of the loss terms :func:`build_loss` understands.
LOSS_TERMS = tuple(_terms(1.0))


class MaskedLoss(nn.Module):
    """A sum of loss terms over valid pixels: ``loss(logits, target, valid) -> scalar``.

    With ``weights`` (one per channel) the channels' losses are averaged with those weights,
    e.g. ``(1, 2)`` counts the separation channel twice as much as the building channel.
    """

    def __init__(
        self, name: str, terms: list[nn.Module], weights: tuple[float, ...] | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.terms = nn.ModuleList(terms)
        self.weights = weights

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Loss of logits (N, C, H, W) against target (N, C, H, W) where valid (N, 1, H, W)."""
        if logits.shape != target.shape:
            raise ValueError(
                f"Logits {tuple(logits.shape)} and target {tuple(target.shape)} differ."
            )
        logits = logits.float()
        if not bool(valid.any()):
            return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
        total = logits.new_zeros(())
        if self.weights is None or len(set(self.weights)) == 1:
            for term in self.terms:
                total = total + term(logits, target, valid)
            return total
        if len(self.weights) != logits.shape[1]:
            raise ValueError(f"{len(self.weights)} weights for {logits.shape[1]} channels.")
        for c, weight in enumerate(self.weights):
            for term in self.terms:
                total = total + weight * term(logits[:, c : c + 1], target[:, c : c + 1], valid)
        return total / sum(self.weights)


def build_loss(
    name: str = "bce+dice", pos_weight: float = 1.0, weights: tuple[float, ...] | None = None
) -> MaskedLoss:
    """A loss by name: one of :data:`LOSS_TERMS` or a sum like ``"bce+dice"``.

    Args:
        name: term names joined by ``+`` (case and spaces ignored).
        pos_weight: weight of positive pixels in the BCE term (> 0; > 1 favours recall).
        weights: loss weight per channel (> 0; None: all alike).

    Raises:
        ConfigError: an unknown term or a non-positive ``pos_weight`` or weight.
    """
    if not pos_weight > 0:
        raise ConfigError(f"pos_weight must be > 0, got {pos_weight}.")
    if weights is not None and not all(w > 0 for w in weights):
        raise ConfigError(f"Class loss weights must be > 0, got {list(weights)}.")
    parts = [p.strip().lower() for p in name.split("+")]
    available = _terms(pos_weight)
    unknown = [p for p in parts if p not in available]
    if unknown or not parts:
        raise ConfigError(
            f"Unknown loss {name!r}; use one of {', '.join(LOSS_TERMS)} or a sum such as"
            " bce+dice or focal+dice."
        )
    return MaskedLoss("+".join(parts), [available[p]() for p in parts], weights)
