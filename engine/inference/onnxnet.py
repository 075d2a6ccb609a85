"""The ONNX Runtime runtime of a :class:`engine.inference.network.Network`: an exported
``.onnx`` model (:mod:`engine.models.onnxfile`) on the CPU, without torch.

ONNX Runtime applies its graph optimisations (operator fusion, constant folding) when the
session opens, and runs fp32: its CPU provider has no bf16 path faster than fp32 for these
models, so ``--precision bf16`` is refused here (use torch for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.cores import allowed_threads
from engine.errors import ConfigError
from engine.inference.network import dihedral_views, undo_view
from engine.inference.precision import check_precision
from engine.models.onnxfile import read_onnx
from engine.models.spec import ModelSpec


@dataclass
class OnnxNetwork:
    """An ONNX Runtime session predicting on the CPU (see
    :class:`engine.inference.network.Network`)."""

    session: Any
    stride: int
    threads: int

    def __post_init__(self) -> None:
        self.kind = "cpu"
        self.description = "cpu"
        self.runtime = "onnx"
        self.precision = "fp32"
        self._input = self.session.get_inputs()[0].name

    def probabilities(self, batch: np.ndarray, tta: bool) -> np.ndarray:
        """See :meth:`engine.inference.network.Network.probabilities`."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        total: np.ndarray | None = None
        count = 0
        for view, how in dihedral_views(x, tta):
            logits = self.session.run(None, {self._input: view})[0]
            prob = undo_view(1.0 / (1.0 + np.exp(-logits.astype(np.float32))), how)
            total = prob if total is None else total + prob
            count += 1
        assert total is not None
        return np.ascontiguousarray(total / count, dtype=np.float32)

    @contextmanager
    def sharing(self, streams: int) -> Iterator[int]:
        """See :meth:`engine.inference.network.Network.sharing` (a session's threads are set
        when it opens: each caller runs on them)."""
        yield self.threads

    def free_memory(self) -> int | None:
        """See :meth:`engine.inference.network.Network.free_memory`."""
        return None


def open_onnx(
    path: str, precision: str = "auto", threads: int | None = None
) -> tuple[OnnxNetwork, ModelSpec]:
    """The network of the exported model ``path`` on ``threads`` CPU threads (default:
    :func:`engine.cores.allowed_threads`).

    Raises:
        ModelFileError: see :func:`engine.models.onnxfile.read_onnx`.
        ConfigError: precision bf16 (torch only) or unknown.
    """
    check_precision(precision)
    if precision == "bf16":
        raise ConfigError(
            "Precision bf16 runs on torch only: ONNX Runtime runs the model in fp32 here; use"
            " precision auto or fp32, or runtime torch with the .pt model."
        )
    count = threads or allowed_threads()
    session, spec, stride = read_onnx(path, count)
    return OnnxNetwork(session, stride, count), spec
