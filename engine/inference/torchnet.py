"""The torch runtime of a :class:`engine.inference.network.Network`: a ``.pt`` model file on
a CPU or GPU.

The network is made ready once (:func:`inference_model`: eval mode, batch norms folded,
channels-last) and predicts batches through :func:`engine.inference.tta.predict_probabilities`,
on a CPU in fp32 or bf16 autocast (:mod:`engine.inference.precision`).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from engine.inference.precision import bf16_turned_off, use_bf16
from engine.inference.sizing import model_threads
from engine.inference.tta import predict_probabilities
from engine.models.device import describe_device, resolve_device
from engine.models.fold import fold_batch_norms
from engine.models.modelfile import load_model
from engine.models.registry import output_stride
from engine.models.spec import ModelSpec

#: Models :func:`inference_model` made, and the device each is ready for.
_READY: weakref.WeakKeyDictionary[torch.nn.Module, torch.device] = weakref.WeakKeyDictionary()


def inference_model(
    model: torch.nn.Module, in_channels: int, device: torch.device
) -> torch.nn.Module:
    """``model`` ready to predict on ``device``: in eval mode, its batch norms folded
    (:func:`engine.models.fold.fold_batch_norms`), in channels-last (the batches' layout,
    :mod:`engine.inference.tta`).

    The folding is made and checked on the CPU (on a copy of a model that is elsewhere, so
    ``model`` itself does not move): a GPU would build convolution plans for the check's input
    shape, which prediction never uses (about 2 s per shape on an H200, docs/BENCHMARKS.md).
    A model this function made is returned as it is (a cluster worker's cached model goes
    through :func:`engine.inference.job.prepare_job` for every strip).
    """
    if _READY.get(model) == device:
        return model
    param = next(model.parameters(), None)
    if param is not None and param.device.type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    model = fold_batch_norms(model.eval(), in_channels)
    ready = model.to(device).to(memory_format=torch.channels_last)
    _READY[ready] = device
    return ready


def cpu_bf16() -> bool:
    """True when torch reports a bf16 path on this CPU (AMX or AVX512-BF16) and uses its
    AVX512 kernels (``ATEN_CPU_CAPABILITY=avx2`` turns it off, as on an older CPU), unless
    :data:`engine.inference.precision.NO_BF16_ENV` is set."""
    if bf16_turned_off():
        return False
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    has = any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    return has and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2", "NO AVX")


@dataclass
class TorchNetwork:
    """A torch model ready to predict on ``device`` (see
    :class:`engine.inference.network.Network`); ``bf16``: bf16 autocast on a CPU."""

    model: torch.nn.Module
    device: torch.device
    bf16: bool = False

    def __post_init__(self) -> None:
        self.model.eval()
        self.kind = self.device.type
        self.description = describe_device(self.device)
        self.runtime = "torch"
        self.precision = "bf16" if self.bf16 or self.kind == "cuda" else "fp32"
        self.stride = output_stride(self.model)
        self.threads = torch.get_num_threads()

    def probabilities(self, batch: np.ndarray, tta: bool) -> np.ndarray:
        """See :meth:`engine.inference.network.Network.probabilities`."""
        return predict_probabilities(self.model, batch, self.device, tta, self.bf16)

    @contextmanager
    def sharing(self, streams: int) -> Iterator[int]:
        """See :meth:`engine.inference.network.Network.sharing`."""
        with model_threads(streams) as each:
            yield each

    def free_memory(self) -> int | None:
        """See :meth:`engine.inference.network.Network.free_memory`."""
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.mem_get_info(self.device)[0])


def torch_network(
    model: torch.nn.Module, spec: ModelSpec, device: torch.device, precision: str = "auto"
) -> TorchNetwork:
    """A network of ``model`` (in memory) made ready for ``device`` in ``precision``."""
    ready = inference_model(model, spec.in_channels, device)
    return TorchNetwork(ready, device, use_bf16(precision, device.type, cpu_bf16()))


def open_torch(
    path: str, device: str, precision: str, threads: int | None = None
) -> tuple[TorchNetwork, ModelSpec]:
    """The network of the ``.pt`` model file ``path`` on ``device`` in ``precision`` (torch
    set to ``threads`` threads when given)."""
    if threads is not None:
        torch.set_num_threads(threads)
    chosen = resolve_device(device)
    model, spec = load_model(path, device=str(chosen))
    return torch_network(model, spec, chosen, precision), spec
