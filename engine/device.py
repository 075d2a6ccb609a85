"""Choosing the torch device a command runs on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import torch

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
    return f"{device.type} ({torch.get_num_threads()} threads)"
