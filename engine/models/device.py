"""Choosing the torch device a command runs on (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), and
describing the processor, which explains most differences in speed between machines."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.cores import cpu_quota, usable_cores
from engine.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``: ``auto`` is CUDA when available, else the CPU.

    Raises:
        ConfigError: the name is unknown, or CUDA was asked for where there is none (or
            not that many GPUs).
    """
    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"Device {name!r} was asked for but CUDA is not available (no NVIDIA GPU, or a"
                " CPU-only torch); use device 'auto' or 'cpu'."
            )
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ConfigError(f"Device {name!r} is not valid; write cuda:N with N a GPU number.")
        count = torch.cuda.device_count()
        if int(index_text) >= count:
            raise ConfigError(
                f"Device {name!r} does not exist: {count} GPU(s) found; use cuda:0 to"
                f" cuda:{count - 1}."
            )
        return torch.device(f"cuda:{int(index_text)}")
    raise ConfigError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.")


def describe_device(device: torch.device) -> str:
    """A short human-readable name, e.g. ``cuda:0 (NVIDIA H200)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({describe_cpu()})"


#: CPU flags that change how fast torch runs a model, strongest first.
_SPEED_FLAGS = ("amx_tile", "avx512_bf16", "avx512f", "avx2")


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (empty where there is none)."""
    name, flags = "", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, flags


@dataclass(frozen=True)
class CpuFacts:
    """What explains a CPU's speed for torch (record it with every timing)."""

    model: str
    flags: tuple[str, ...]  # those of _SPEED_FLAGS the CPU has
    torch_capability: str  # the kernels torch picked: AVX512, AVX2, DEFAULT
    torch_threads: int
    cores_usable: int
    quota: float | None  # CPUs allowed by the cgroup quota; None: no quota

    def describe(self) -> str:
        """One line, e.g. ``AMD EPYC, AVX512 kernels (avx512f avx2), 2 torch threads, 2 cores``."""
        quota = f", quota {self.quota:g} CPUs" if self.quota is not None else ""
        return (
            f"{self.model}, {self.torch_capability} kernels ({' '.join(self.flags) or 'no AVX2'}),"
            f" {self.torch_threads} torch threads, {self.cores_usable} cores{quota}"
        )


def cpu_facts() -> CpuFacts:
    """The model, vector flags, torch's kernels and threads, usable cores and quota of this CPU."""
    name, flags = _cpuinfo()
    usable = usable_cores()
    return CpuFacts(
        model=name or platform.processor() or platform.machine(),
        flags=tuple(flag for flag in _SPEED_FLAGS if flag in flags),
        torch_capability=str(torch.backends.cpu.get_cpu_capability()),
        torch_threads=torch.get_num_threads(),
        cores_usable=usable,
        quota=cpu_quota(),
    )


def fit_threads_to_cpu() -> int | None:
    """Give torch no more threads than the CPUs this process may use; return the new count.

    torch starts as many threads as the machine has cores, but a container may be allowed
    fewer (cpu affinity, or a cgroup quota such as Docker's ``--cpus``): threads beyond that
    wait for each other at every parallel step. A thread count the user set
    (``OMP_NUM_THREADS``) is kept. Returns None when nothing changed.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    facts = cpu_facts()
    allowed = facts.cores_usable
    if facts.quota is not None:
        allowed = min(allowed, max(1, math.floor(facts.quota)))
    if facts.torch_threads <= allowed:
        return None
    torch.set_num_threads(allowed)
    return allowed


def describe_cpu() -> str:
    """:meth:`CpuFacts.describe` of this machine."""
    return cpu_facts().describe()
