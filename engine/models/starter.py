"""The starter model: the building model that comes with Footprint, used when none is given.

It lives in ``resources/models/footprint-starter.pt`` of the repository (the plugin zip lays
out ``engine/`` and ``resources/`` the same way), with its model card
``footprint-starter.json`` beside it. ``detect`` and ``predict`` use it when ``--model`` is
not given; ``--model starter`` and ``--init-model starter`` (train: fine-tune it) name it.
The environment variable :data:`ENV` replaces it by another file (e.g. a model improved on
your own imagery, made the default of every run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.config import STARTER
from engine.errors import ModelFileError
from engine.events import Progress

#: Environment variable naming another file to use as the starter model.
ENV = "FOOTPRINT_STARTER_MODEL"
#: The shipped file, relative to the folder holding the ``engine`` package.
SHIPPED = Path("resources") / "models" / "footprint-starter.pt"
#: What it was trained on and what it suits, for the log.
ABOUT = (
    "trained on drone imagery of Banepa (Nepal), Zanzibar, Nairobi and Catanduanes"
    " (Philippines) at {resolution:g} m per pixel, it suits RGB drone or aerial imagery of"
    " about 5-30 cm pixels (imagery is resampled to {resolution:g} m). For better results on"
    " your imagery, correct its buildings in one neighbourhood and improve it with them"
    " (Processing: Improve model; python -m engine improve)."
)


def _chosen() -> str:
    """The file :data:`ENV` names ("" when unset)."""
    return os.environ.get(ENV, "").strip()


def starter_path() -> Path:
    """The starter model's file: :data:`ENV` when set, else the shipped one."""
    if _chosen():
        return Path(_chosen()).expanduser().absolute()
    return Path(__file__).resolve().parents[2] / SHIPPED


def is_starter(model: str | None) -> bool:
    """True when ``model`` means the starter model (not given, or ``starter``)."""
    return model is None or model.strip() in ("", STARTER)


def starter_model(progress: Progress, instead: str = "--model (QGIS: Model file)") -> str:
    """The starter model's file, checked to exist, said in the log (which file, version,
    resolution, what it suits); ``instead``: the option that gives another model.

    Raises:
        ModelFileError: the file is missing.
    """
    path = starter_path()
    if not path.is_file() and _chosen():
        raise ModelFileError(
            f"The starter model {path} set by {ENV} is missing: give a model with {instead},"
            f" or set {ENV} to a model file that exists (unset: the one that comes with"
            " Footprint)."
        )
    if not path.is_file():
        raise ModelFileError(
            f"The starter model is not installed ({path} is missing): give a model with"
            f" {instead}, or reinstall the plugin."
        )
    from engine.models.modelfile import read_spec

    resolution = read_spec(path).resolution_m
    if _chosen():  # another model: what is said of the shipped one need not hold
        about = f" (set by {ENV}), applied at {resolution:g} m per pixel."
    else:
        about = f"{_card_version(path)}: " + ABOUT.format(resolution=resolution)
    progress.log(f"Using the starter model {path}{about}")
    return str(path)


def resolve_model(model: str | None, progress: Progress) -> str:
    """``model``, or the starter model's file, checked and said in the log, when it means the
    starter model (:func:`is_starter`, :func:`starter_model`)."""
    return starter_model(progress) if is_starter(model) else str(model)


def model_file(model: str | None) -> str:
    """The file ``model`` names (the starter model's when :func:`is_starter`), unchecked."""
    return str(starter_path()) if is_starter(model) else str(model)


def _card_version(path: Path) -> str:
    """`` (version V, DATE)`` from the model card beside ``path`` ("" without one)."""
    try:
        card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(card, dict):
        return ""
    parts = [f"version {card['version']}" if card.get("version") else ""]
    parts.append(str(card.get("date") or ""))
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""
