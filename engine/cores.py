"""The CPU cores this process may run on."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's CPU affinity (all the machine's where affinity is unknown).
    A cgroup quota is not counted here (see :func:`engine.models.device.cpu_quota`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
