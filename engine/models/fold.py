"""Folding batch normalisation into the convolution before it, for inference.

In eval mode a batch norm after a convolution is a fixed scale and shift per channel, which the
convolution's weights and bias can carry: the network then computes the same function with one
pass over each activation fewer. With the model in channels-last on a CPU, batch norms were
12% of a Lite0 U-Net's time (2-core AMD EPYC, docs/BENCHMARKS.md).

Which batch norm follows which convolution is found by running the network once on a small
input and watching the tensors (not guessed from module names): a batch norm is folded only
where its input is exactly a convolution's output, every use of that output is that batch
norm, and it is a plain ``torch.nn.BatchNorm2d`` or timm's ``BatchNormAct2d`` (a batch norm
followed by its own dropout and activation, which stay). The folded network is then checked
against the original on that input; where they differ, the original is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

#: Largest difference in probability allowed between the folded and the original network.
TOLERANCE = 1e-4
#: Side of the input the network is traced and checked on.
PROBE_SIDE = 64


def _norm_replacement(norm: nn.Module) -> nn.Module | None:
    """What stays of ``norm`` once folded: nothing, or timm's dropout + activation; None for a
    kind of norm this module does not fold."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    if type(norm).__name__ == "BatchNormAct2d":
        drop, act = getattr(norm, "drop", None), getattr(norm, "act", None)
        if isinstance(drop, nn.Module) and isinstance(act, nn.Module):
            return nn.Sequential(drop, act)
    return None


def _pairs(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(convolution name, batch norm name) where the norm takes exactly the convolution's
    output, and nothing else takes that output."""
    modules = dict(model.named_modules())
    outputs: dict[int, str] = {}  # id of a convolution's output -> the convolution
    kept: list[torch.Tensor] = []  # keeps those outputs alive (ids stay unique)
    uses: dict[int, list[str]] = {}  # id of a convolution's output -> modules taking it
    handles = []

    def after_conv(name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(_m: nn.Module, _inputs: tuple[object, ...], output: object) -> None:
            if isinstance(output, torch.Tensor):
                outputs[id(output)] = name
                kept.append(output)

        return hook

    def before_any(name: str) -> Callable[[nn.Module, tuple[object, ...]], None]:
        def hook(_m: nn.Module, inputs: tuple[object, ...]) -> None:
            for value in inputs:
                if isinstance(value, torch.Tensor) and id(value) in outputs:
                    uses.setdefault(id(value), []).append(name)

        return hook

    for name, module in modules.items():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv(name)))
        leaf = not list(module.children())  # the leaves take every tensor; timm's norm has some
        if name and (leaf or isinstance(module, nn.modules.batchnorm._BatchNorm)):
            handles.append(module.register_forward_pre_hook(before_any(name)))
    try:
        with torch.inference_mode():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for key, conv in outputs.items():
        users = uses.get(key, [])
        if len(users) == 1 and isinstance(modules[users[0]], nn.modules.batchnorm._BatchNorm):
            pairs.append((conv, users[0]))
    return pairs


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def fold_batch_norms(model: nn.Module, in_channels: int) -> nn.Module:
    """``model`` (in eval mode) with its batch norms folded into the convolutions before them,
    a new module; ``model`` itself if there is nothing to fold, if the folded network does
    not give the same probabilities (within :data:`TOLERANCE`), or if the network does not
    take a :data:`PROBE_SIDE` input (it is then used as it is)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    probe = torch.randn(
        1, in_channels, PROBE_SIDE, PROBE_SIDE, generator=torch.Generator().manual_seed(0)
    ).to(device)
    model.eval()
    try:
        return _folded(model, probe)
    except RuntimeError:  # e.g. an encoder that needs a larger input: no folding
        return model


def _folded(model: nn.Module, probe: torch.Tensor) -> nn.Module:
    pairs = _pairs(model, probe)
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    modules = dict(folded.named_modules())
    for conv_name, norm_name in pairs:
        conv, norm = modules[conv_name], modules[norm_name]
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.modules.batchnorm._BatchNorm)
        rest = _norm_replacement(norm)
        if rest is None or norm.running_mean is None or norm.running_var is None:
            continue
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
            norm.weight, norm.bias,
        )  # fmt: skip
        conv.weight, conv.bias = weight, bias
        _set(folded, norm_name, rest)
    with torch.inference_mode():
        before = torch.sigmoid(model(probe).float())
        after = torch.sigmoid(folded(probe).float())
    if before.shape != after.shape or float((before - after).abs().max()) > TOLERANCE:
        return model
    return folded
