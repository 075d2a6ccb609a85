"""The network a prediction runs: a model file opened by torch or by ONNX Runtime.

Prediction (:mod:`engine.inference.predictor`) needs only a :class:`Network`: probabilities
for a batch of windows, the model's output stride, where it runs and how many threads it has.
Two runtimes provide one:

- torch (:mod:`engine.inference.torchnet`): a ``.pt`` model file written by ``train``; on a CPU
  in fp32 or bf16 (:mod:`engine.inference.precision`), on a GPU under bf16 autocast.
- ONNX Runtime (:mod:`engine.inference.onnxnet`): an ``.onnx`` file written by ``export``
  (:mod:`engine.models.onnxfile`), on the CPU; this path imports no torch, so detection runs
  in the light engine (``requirements-detect.txt``).

``auto`` chooses: ONNX Runtime for an ``.onnx`` file; for a ``.pt``, torch when torch is
installed, else the ``.onnx`` file beside it (the starter model ships as both). With torch
installed, the ``.onnx`` export beside a ``.pt`` still runs instead where it is the faster
choice (:func:`onnx_is_faster`: a CPU without a bf16 path, or fp32 asked, no GPU) and it was
exported from that very file (its recorded hash matches): the same fp32 arithmetic, about
2.5 s less start-up (no torch and segmentation-models-pytorch to import) and less memory.
This module imports neither runtime.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import ConfigError, ModelFileError
from engine.events import Progress
from engine.inference.precision import NO_BF16_ENV, bf16_turned_off
from engine.models.spec import ModelSpec

#: File suffix of an exported model.
ONNX_SUFFIX = ".onnx"


class Network(Protocol):
    """A model ready to predict windows."""

    #: "cpu" or "cuda": what the window, batch and streams are sized for.
    kind: str
    #: Where it runs, for the log and the results (``cpu``, ``cuda:0 (NVIDIA H200)``).
    description: str
    #: What runs it: ``torch`` or ``onnx``.
    runtime: str
    #: Its arithmetic: ``fp32`` or ``bf16``.
    precision: str
    #: The model's output stride: windows are multiples of it.
    stride: int
    #: CPU threads the runtime may use.
    threads: int

    def probabilities(self, batch: np.ndarray, tta: bool) -> np.ndarray:
        """Sigmoid probabilities (N, K, H, W) float32 of a (N, C, H, W) float32 batch; with
        ``tta`` (square windows) the average over the eight dihedral views."""
        ...

    def sharing(self, streams: int) -> AbstractContextManager[int]:
        """The runtime's threads shared among ``streams`` callers for the duration; yields
        the threads each gets."""
        ...

    def free_memory(self) -> int | None:
        """Free device memory in bytes (a GPU's), None on a CPU."""
        ...


def torch_installed() -> bool:
    """True when torch can be imported (the full engine)."""
    return importlib.util.find_spec("torch") is not None


def onnxruntime_installed() -> bool:
    """True when ONNX Runtime can be imported."""
    return importlib.util.find_spec("onnxruntime") is not None


def cpu_has_bf16_path() -> bool:
    """Whether torch would run ``auto`` precision in bf16 on this CPU, told without importing
    torch (:func:`engine.inference.torchnet.cpu_bf16` asks torch): AVX512-BF16 (CPUs with AMX
    have it too) as NumPy detects it, unless ``ATEN_CPU_CAPABILITY`` limits torch to AVX2.
    Unknown (NumPy cannot say): True."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() in ("default", "avx2"):
        return False
    try:  # NumPy's runtime CPU dispatch knows the CPU's features on every platform
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:
        return True
    features = getattr(umath, "__cpu_features__", {})
    return bool(features.get("AVX512BF16", True))


def cuda_device_present() -> bool:
    """Whether the NVIDIA driver reports a GPU to this process (through the driver's own
    library, without importing torch); False where there is no driver."""
    names = {"linux": ["libcuda.so.1", "libcuda.so"], "win32": ["nvcuda.dll"]}
    for name in names.get(sys.platform, []):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return False
        return count.value > 0
    return False


def onnx_is_faster(device: str, precision: str) -> str | None:
    """Why ONNX Runtime runs a model faster than torch here, or None where torch is the
    faster (or the only) choice: a GPU asked for or present, bf16 asked for, or ``auto``
    precision on a CPU with a bf16 path (torch's bf16 is ~1.4x ONNX Runtime's fp32 beyond a
    few megapixels, docs/BENCHMARKS.md)."""
    if precision not in ("auto", "fp32") or device not in ("auto", "cpu"):
        return None
    if device == "auto" and cuda_device_present():
        return None
    if precision == "fp32":
        why = "fp32 asked for"
    elif bf16_turned_off():
        why = f"fp32 asked for ({NO_BF16_ENV})"
    elif cpu_has_bf16_path():
        return None
    else:
        why = "this CPU has no bf16 path"
    return (
        f"{why}, where ONNX Runtime computes as fast as torch and starts about 2.5 s sooner,"
        " in less memory (--runtime torch keeps torch)"
    )


def choose_runtime(path: str, runtime: str) -> tuple[str, str]:
    """The runtime (``torch`` or ``onnx``) and the file it opens for model file ``path`` and
    the ``runtime`` asked for (``auto``, ``torch``, ``onnx``).

    Raises:
        ConfigError: an unknown runtime, or one that is not installed.
        ModelFileError: the runtime cannot read that kind of file.
    """
    if runtime not in ("auto", "torch", "onnx"):
        raise ConfigError(f"Runtime {runtime!r} is not one of auto, torch, onnx.")
    is_onnx = Path(path).suffix.lower() == ONNX_SUFFIX
    beside = str(Path(path).with_suffix(ONNX_SUFFIX))
    if runtime == "auto":
        runtime = "onnx" if is_onnx or not torch_installed() else "torch"
    if runtime == "torch":
        if is_onnx:
            raise ModelFileError(
                f"{path} is an ONNX model: torch runs the .pt model files that train writes;"
                " use runtime onnx (or auto) for it."
            )
        if not torch_installed():
            raise ConfigError(
                "Runtime torch asked for, but torch is not installed (the detection-only"
                " engine): use runtime onnx with an .onnx model, or install the full engine"
                " (QGIS: Plugins > Footprint > Install engine > Full)."
            )
        return "torch", path
    if not onnxruntime_installed():
        raise ConfigError(
            "ONNX Runtime is not installed: install the detection engine (QGIS: Plugins >"
            " Footprint > Install engine), or `pip install onnxruntime`, or use runtime torch"
            " with a .pt model."
        )
    if is_onnx:
        return "onnx", path
    if Path(beside).is_file():
        return "onnx", beside
    hint = (
        "torch is not installed (the detection-only engine): "
        if not torch_installed()
        else "runtime onnx asked for: "
    )
    raise ModelFileError(
        f"{path} is a torch model file and {hint}export it to ONNX first (`python -m engine"
        f" export --model {path} --output {beside}`, or in QGIS: Export model to ONNX, with the"
        " full engine), then give the .onnx file."
    )


def open_network(
    path: str,
    runtime: str,
    device: str,
    precision: str,
    progress: Progress,
    threads: int | None = None,
) -> tuple[Network, ModelSpec]:
    """The network of model file ``path`` on the runtime :func:`choose_runtime` picks, on
    ``device`` (torch: auto/cpu/cuda[:N]; ONNX Runtime: the CPU) in ``precision``, on
    ``threads`` CPU threads (default: torch's count, or the cores this process may use).

    Raises:
        ModelFileError, ConfigError: see :func:`choose_runtime`, and an unreadable file.
    """
    chosen, file = choose_runtime(path, runtime)
    if chosen == "torch" and runtime == "auto":
        faster = _faster_export(path, device, precision, progress, threads)
        if faster is not None:
            return faster
    if chosen == "onnx":
        from engine.inference.onnxnet import open_onnx

        if device not in ("auto", "cpu"):
            progress.log(f"ONNX Runtime runs on the CPU here: device {device} is not used.")
        if file != path:
            progress.log(f"Using {file}, the ONNX export of {path} (torch is not installed).")
        return open_onnx(file, precision, threads)
    from engine.inference.torchnet import open_torch
    from engine.models.device import fit_threads_to_cpu

    fitted = fit_threads_to_cpu() if threads is None else None
    if fitted is not None:
        progress.log(f"Using {fitted} torch thread(s): the CPUs this process may use.")
    return open_torch(file, device, precision, threads)


def _faster_export(
    path: str, device: str, precision: str, progress: Progress, threads: int | None
) -> tuple[Network, ModelSpec] | None:
    """The ``.onnx`` export beside the ``.pt`` ``path`` on ONNX Runtime, where that is the
    faster choice (:func:`onnx_is_faster`) and the export was made from this very file; None
    otherwise (torch runs it)."""
    model = Path(path).expanduser()
    beside = model.with_suffix(ONNX_SUFFIX)
    why = onnx_is_faster(device, precision)
    if why is None or not model.is_file() or not beside.is_file():
        return None  # a missing model: torch's loader says so, as it always has
    if not onnxruntime_installed():
        return None
    from engine.inference.onnxnet import open_onnx
    from engine.models.onnxfile import exported_from, file_sha256

    try:
        digest = file_sha256(model)
        network, spec = open_onnx(str(beside), precision, threads)
    except (OSError, ModelFileError, ConfigError) as err:
        progress.log(f"Not using {beside} ({err}); torch runs {path}.")
        return None
    source = exported_from(network.session)
    if source is None:  # an export made before the hash was recorded: it may be stale
        return None
    if source != digest:
        progress.log(
            f"{beside} was exported from another version of {path} (the model changed since):"
            f" torch runs {path}; export it again to run it on ONNX Runtime."
        )
        return None
    progress.log(f"Running {beside}, the ONNX export of {path}, on ONNX Runtime: {why}.")
    return network, spec


def dihedral_views(batch: np.ndarray, tta: bool) -> Iterator[tuple[np.ndarray, tuple[int, bool]]]:
    """The batch's views for test-time augmentation (the identity alone without ``tta``):
    each view with its (quarter turns, flip); see :func:`undo_view`."""
    for flip in (False, True) if tta else (False,):
        for turns in range(4) if tta else range(1):
            view = batch[..., ::-1] if flip else batch
            yield np.ascontiguousarray(np.rot90(view, turns, axes=(2, 3))), (turns, flip)


def undo_view(output: np.ndarray, view: tuple[int, bool]) -> np.ndarray:
    """``output`` of a view of :func:`dihedral_views` turned back onto the batch's pixels."""
    turns, flip = view
    back = np.rot90(output, -turns, axes=(2, 3)) if turns else output
    return back[..., ::-1] if flip else back
