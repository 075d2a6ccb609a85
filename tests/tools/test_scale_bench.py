"""The scale benchmark refuses a GPU run clearly where there is no GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: nothing to refuse")
def test_cuda_is_refused_without_a_gpu() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "no CUDA GPU here" in proc.stderr and "--device cpu" in proc.stderr
    assert "Traceback" not in proc.stderr
