"""Known-function models and a prediction runner shared by the prediction tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from torch import nn

from engine.config import PredictConfig
from engine.events import NullProgress
from engine.models.modelfile import ModelSpec
from engine.predict import predict_with_model

GRID = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)


class Pointwise(nn.Module):
    """logit = 10 * (band1 - 0.5): probability is a known function of each pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * (x[:, :1] - 0.5)


class Box3(nn.Module):
    """logit = 10 * (3x3 mean of band1 - 0.5), zero padded: equivariant under flips/turns."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = torch.full((1, 1, 3, 3), 1.0 / 9.0, dtype=x.dtype, device=x.device)
        return 10.0 * (nn.functional.conv2d(x[:, :1], kernel, padding=1) - 0.5)


class LeftNeighbour(nn.Module):
    """logit = 10 * (band1 of the left neighbour - 0.5): not rotation-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = torch.roll(x[:, :1], shifts=1, dims=3)
        return 10.0 * (shifted - 0.5)


class TwoClass(nn.Module):
    """Building = pointwise; contact = 1 - building."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = 10.0 * (x[:, :1] - 0.5)
        return torch.cat([logit, -logit], dim=1)


def sig(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-10.0 * (v.astype(np.float64) - 0.5)))


def make_spec(tile: int = 32, classes: tuple[str, ...] = ("building",), **kw: Any) -> ModelSpec:
    args: dict[str, Any] = {
        "architecture": "test",
        "encoder": "none",
        "in_channels": 1,
        "classes": classes,
        "bands": (1,),
        "mean": (0.0,),
        "std": (1.0,),
        "tile_size": tile,
        "resolution_m": 0.5,
    }
    args.update(kw)
    return ModelSpec(**args)


def smooth(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((height, width)).astype(np.float32)


def run(
    tmp_path: Path,
    data: np.ndarray,
    model: nn.Module | None = None,
    spec: ModelSpec | None = None,
    name: str = "out.tif",
    progress: Any = None,
    raster: Path | None = None,
    **cfg: Any,
) -> tuple[dict[str, Any], np.ndarray]:
    """Predict ``data`` (written as a raster unless ``raster`` is given); return result, band(s)."""
    if raster is None:
        raster = tmp_path / f"in-{name}"
        with rasterio.open(
            raster,
            "w",
            driver="GTiff",
            width=data.shape[-1],
            height=data.shape[-2],
            count=1 if data.ndim == 2 else data.shape[0],
            dtype=str(data.dtype),
            crs="EPSG:32616",
            transform=cfg.pop("transform", GRID),
            nodata=cfg.pop("nodata", None),
        ) as dst:
            dst.write(data if data.ndim == 3 else data[None])
    spec = spec or make_spec()
    cfg.setdefault("window", spec.tile_size)  # several windows over these small rasters
    config = PredictConfig(
        raster=str(raster), model="unused.pt", output=str(tmp_path / name), **cfg
    )
    result = predict_with_model(config, model or Pointwise(), spec, progress or NullProgress())
    with rasterio.open(result["output"]) as out:
        values = out.read()
    return result, values
