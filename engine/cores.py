"""The CPU cores this process may run on."""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cores() -> int:
    """Cores in this process's CPU affinity (all the machine's where affinity is unknown).
    A cgroup quota is not counted here (see :func:`cpu_quota`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def cpu_quota() -> float | None:
    """The CPUs this process may use by its cgroup quota (``None``: no quota found)."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def allowed_threads() -> int:
    """Threads a runtime should use: ``OMP_NUM_THREADS`` when set, else the usable cores
    within the cgroup quota (see :func:`engine.models.device.fit_threads_to_cpu` for torch)."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    allowed = usable_cores()
    quota = cpu_quota()
    if quota is not None:
        allowed = min(allowed, max(1, math.floor(quota)))
    return allowed
