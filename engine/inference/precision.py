"""The arithmetic a model runs in on a CPU: fp32, or bf16 where the CPU has a fast path.

CPUs with AMX or AVX512-BF16 (recent Xeons, many cloud machines) run a convolution network
markedly faster under torch's bf16 autocast (a Lite0 U-Net on a 2-core Xeon with AMX: 2.4x
the fp32 speed per pixel, docs/BENCHMARKS.md) while the building scores stay within their
intervals (same weights, Banepa test area). ``auto`` picks bf16 on such a CPU, fp32 elsewhere;
``fp32`` and ``bf16`` override (bf16 on a CPU without the path is slow, not wrong).
A GPU runs bf16 autocast whatever is asked (:mod:`engine.inference.tta`). ONNX Runtime runs
fp32 (its CPU provider has no faster bf16 path for these models).

Torch-free: the caller passes the CPU's facts (:func:`engine.inference.torchnet.cpu_bf16`).
"""

from __future__ import annotations

import os

from engine.config import PRECISIONS
from engine.errors import ConfigError

#: Set (not "0"), ``auto`` means fp32 on every CPU, in this process and those it starts (Dask
#: workers): results then do not depend on the CPU (the test suite sets it).
NO_BF16_ENV = "FOOTPRINT_NO_BF16"


def bf16_turned_off() -> bool:
    """True when :data:`NO_BF16_ENV` is set (not "0"): ``auto`` then means fp32."""
    return os.environ.get(NO_BF16_ENV, "").strip() not in ("", "0")


def use_bf16(precision: str, device_type: str, cpu_has_bf16: bool) -> bool:
    """True when a torch model on ``device_type`` ("cpu", "cuda") should run bf16 autocast on
    the CPU: ``bf16`` asked, or ``auto`` on a CPU with a bf16 path (``cpu_has_bf16``).

    Raises:
        ConfigError: an unknown precision.
    """
    check_precision(precision)
    if device_type != "cpu":
        return False
    return precision == "bf16" or (precision == "auto" and cpu_has_bf16)


def check_precision(precision: str) -> None:
    """Raise ConfigError unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"Precision {precision!r} is not one of {', '.join(PRECISIONS)}; auto chooses bf16"
            " on CPUs with AMX or AVX512-BF16, fp32 elsewhere."
        )
