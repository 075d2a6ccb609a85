"""Plugin settings (QgsSettings under ``footprint/``), the plugin's paths and its icon.

``engine_python()`` finds the interpreter of the engine environment: the ``footprint/python``
setting, else the ``FOOTPRINT_PYTHON`` environment variable, else ``.venv`` in the plugin
folder (made by ``scripts/setup.sh``, for developers), else the environment that *Install
engine* made in the QGIS profile (:func:`engine_root`), else "" (the runner then explains how
to set it up).
"""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtGui import QIcon

from .installer import installed_python

PREFIX = "footprint/"
KEY_PYTHON = PREFIX + "python"
KEY_DEVICE = PREFIX + "device"
ENV_PYTHON = "FOOTPRINT_PYTHON"
DEVICES = ("auto", "cpu", "cuda")

#: The plugin folder: it holds metadata.txt, plugin/, engine/ and resources/.
PLUGIN_DIR = Path(__file__).resolve().parent.parent


def resource_path(name: str) -> str:
    """Absolute path of a file in ``resources/``."""
    return str(PLUGIN_DIR / "resources" / name)


def plugin_icon() -> QIcon:
    """The plugin's icon."""
    return QIcon(resource_path("icon.svg"))


def venv_python(folder: Path | None = None) -> str:
    """The interpreter of ``<folder>/.venv`` (default: the plugin folder) if it exists, else ""."""
    venv = (folder or PLUGIN_DIR) / ".venv"
    for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return ""


def engine_root() -> Path:
    """Where *Install engine* puts the engine's environments: the QGIS profile's folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "footprint"


def requirements_file(light: bool = False) -> Path:
    """The pinned requirements shipped with the plugin: the full engine's (``scripts/setup.sh``
    uses them too), or with ``light`` the detection-only engine's."""
    return PLUGIN_DIR / ("requirements-detect.txt" if light else "requirements.txt")


def fallback_python() -> str:
    """The interpreter used when the setting is empty: FOOTPRINT_PYTHON, the plugin's .venv,
    then the installed engine, or ""."""
    env = os.environ.get(ENV_PYTHON, "").strip()
    if env:
        return env
    return venv_python() or installed_python(engine_root())


def engine_python() -> str:
    """The engine interpreter: the setting, else :func:`fallback_python`."""
    value = str(QgsSettings().value(KEY_PYTHON, "", type=str) or "").strip()
    return value or fallback_python()


def engine_device() -> str:
    """The device setting for train/predict/detect: ``auto``, ``cpu`` or ``cuda``."""
    value = str(QgsSettings().value(KEY_DEVICE, "auto", type=str) or "auto").strip()
    return value if value in DEVICES else "auto"


def set_engine_python(path: str) -> None:
    """Store the engine interpreter ("" removes the setting, so the fallbacks apply)."""
    if path.strip():
        QgsSettings().setValue(KEY_PYTHON, path.strip())
    else:
        QgsSettings().remove(KEY_PYTHON)


def set_engine_device(device: str) -> None:
    """Store the device (one of :data:`DEVICES`)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    QgsSettings().setValue(KEY_DEVICE, device)
