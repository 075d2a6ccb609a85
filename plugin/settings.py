"""Plugin settings (QgsSettings under ``footprint/``), the plugin's paths and its icon.

``engine_python()`` finds the interpreter of the engine environment: the ``footprint/python``
setting, else the ``FOOTPRINT_PYTHON`` environment variable, else ``.venv`` in the plugin
folder (made by ``scripts/setup.sh``), else "" (the runner then explains how to set it up).
"""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsSettings
from qgis.PyQt.QtGui import QIcon

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


def engine_python() -> str:
    """The engine interpreter: setting, then FOOTPRINT_PYTHON, then the plugin's .venv, or ""."""
    value = str(QgsSettings().value(KEY_PYTHON, "", type=str) or "").strip()
    if value:
        return value
    env = os.environ.get(ENV_PYTHON, "").strip()
    if env:
        return env
    return venv_python()


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
