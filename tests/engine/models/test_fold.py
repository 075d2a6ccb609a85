"""Batch norms folded into their convolutions for inference (engine.models.fold)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.models.fold import fold_batch_norms
from engine.models.registry import create_model


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _randomise_stats(model: nn.Module) -> None:
    """Running statistics and affine terms far from the identity, so folding matters."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


def _probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.sigmoid(model(x))


class _ConvNorm(nn.Module):
    """A convolution and a batch norm; subclasses say how they are used."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)


class _Residual(_ConvNorm):
    """conv -> norm, and the conv's output added again after the norm: not foldable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.norm(y) + y


def test_unet_with_timm_encoder_folds_every_norm_and_keeps_its_output() -> None:
    model = create_model("unet", "tu-tf_efficientnet_lite0", 3, 2).eval()
    _randomise_stats(model)
    x = torch.randn(2, 3, 96, 96)
    before = _probabilities(model, x)
    assert _norms(model) > 40  # timm's BatchNormAct2d in the encoder, BatchNorm2d in the decoder

    folded = fold_batch_norms(model, 3)

    assert _norms(folded) == 0
    assert torch.allclose(_probabilities(folded, x), before, atol=1e-4)
    assert _norms(model) > 40  # the model given is left as it was
    assert torch.equal(_probabilities(model, x), before)
    assert fold_batch_norms(folded, 3) is folded  # nothing left to fold


def test_a_norm_whose_input_is_used_elsewhere_is_not_folded() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1), _Residual()
    ).eval()
    _randomise_stats(model)

    # the residual's norm, folded, would change the sum: the check against the original
    # network catches it, and the original is kept
    assert fold_batch_norms(model, 3) is model


def test_foldable_norms_are_folded_beside_a_kind_it_does_not_know() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1), nn.SyncBatchNorm(4), nn.ReLU(),
    ).eval()  # fmt: skip
    _randomise_stats(model)
    x = torch.randn(1, 3, 32, 32)

    folded = fold_batch_norms(model, 3)

    assert [
        type(m) for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ] == [nn.SyncBatchNorm]
    assert torch.allclose(_probabilities(folded, x), _probabilities(model, x), atol=1e-5)


class _NeedsLargeInput(_ConvNorm):
    """A network that refuses inputs under 128 px (as some transformer encoders do)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 128:
            raise RuntimeError("input too small")
        return self.norm(self.conv(x))


def test_a_network_the_probe_does_not_fit_is_used_as_it_is() -> None:
    model = _NeedsLargeInput().eval()
    assert fold_batch_norms(model, 3) is model


class _Plain(_ConvNorm):
    """conv -> norm: foldable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def test_inference_model_folds_on_the_cpu_whatever_the_device() -> None:
    """The fold is checked on the CPU and the result moved to the device: on the meta device
    (shapes only, no values) a check there could not pass, yet the norm is folded."""
    from engine.inference.torchnet import inference_model

    model = _Plain()
    _randomise_stats(model)
    ready = inference_model(model, 3, torch.device("meta"))
    assert _norms(ready) == 0
    assert {p.device.type for p in ready.parameters()} == {"meta"}


def test_a_prepared_model_is_not_prepared_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster worker's cached model goes through prepare_job for every strip: folded and
    checked once, then used as it is on the same device."""
    import engine.inference.torchnet as job

    folds: list[nn.Module] = []
    fold = job.fold_batch_norms
    monkeypatch.setattr(job, "fold_batch_norms", lambda m, c: folds.append(m) or fold(m, c))
    cpu = torch.device("cpu")
    ready = job.inference_model(_Plain(), 3, cpu)
    assert job.inference_model(ready, 3, cpu) is ready and len(folds) == 1
    job.inference_model(ready, 3, torch.device("meta"))  # another device: made again
    assert len(folds) == 2
