"""``model-info``: a model file's spec as JSON, for readers without torch (the QGIS plugin)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from engine.config import ModelInfoConfig
from engine.events import Progress
from engine.models.modelfile import read_spec
from engine.results import ModelInfoResult


def model_info(config: ModelInfoConfig, progress: Progress) -> ModelInfoResult:
    """The spec of ``config.model`` (weights memory-mapped, not read).

    Raises:
        ModelFileError: missing, corrupt, foreign, or newer-format file.
    """
    spec = read_spec(config.model)
    return {"model": str(Path(config.model).expanduser().absolute()), "spec": asdict(spec)}
