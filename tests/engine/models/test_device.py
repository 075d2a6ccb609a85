"""The CPU as torch sees it, and torch's threads fitted to the CPUs a process may use."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.models import device
from engine.models.device import CpuFacts, cpu_facts, cpu_quota, fit_threads_to_cpu


@pytest.fixture
def threads() -> int:
    """Restore torch's thread count after the test."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _facts(threads: int, cores: int, quota: float | None) -> CpuFacts:
    return replace(cpu_facts(), torch_threads=threads, cores_usable=cores, quota=quota)


def test_threads_follow_a_quota_below_the_cores(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "cpu_facts", lambda: _facts(8, 8, 1.5))
    assert fit_threads_to_cpu() == 1 and torch.get_num_threads() == 1


def test_threads_follow_the_usable_cores(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "cpu_facts", lambda: _facts(8, 1, None))
    assert fit_threads_to_cpu() == 1 and torch.get_num_threads() == 1


def test_threads_left_alone_when_they_fit_or_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "cpu_facts", lambda: _facts(threads, threads, float(threads)))
    assert fit_threads_to_cpu() is None and torch.get_num_threads() == threads
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setattr(device, "cpu_facts", lambda: _facts(8, 8, 1.0))
    assert fit_threads_to_cpu() is None and torch.get_num_threads() == threads


def test_quota_is_read_from_cgroup_v2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}
    real_read = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if str(self) in files:
            return files[str(self)]
        if str(self).startswith("/sys/fs/cgroup"):
            raise FileNotFoundError(self)
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    assert cpu_quota() == 1.5
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
    assert cpu_quota() is None


def test_description_names_what_explains_speed() -> None:
    text = cpu_facts().describe()
    assert "torch threads" in text and "kernels" in text and "cores" in text
