"""Plugin settings (QgsSettings under ``footprint/``) and the settings dialog.

``engine_python()`` finds the interpreter of the engine environment: the ``footprint/python``
setting, else the ``FOOTPRINT_PYTHON`` environment variable, else ``.venv`` in the plugin
folder (made by ``scripts/setup.sh``), else "" (the runner then explains how to set it up).
"""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

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


def _tr(text: str) -> str:
    return str(QCoreApplication.translate("Footprint", text))


class SettingsDialog(QDialog):
    """Interpreter path (with a file picker), device, and a button that checks the engine."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(_tr("Footprint settings"))
        self.setWindowIcon(plugin_icon())
        self.python = QgsFileWidget()
        self.python.setStorageMode(QgsFileWidget.GetFile)
        self.python.setFilePath(str(QgsSettings().value(KEY_PYTHON, "", type=str) or ""))
        self.python.lineEdit().setPlaceholderText(engine_python() or _tr("not found"))
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(engine_device())
        self.check_button = QPushButton(_tr("Check"))
        self.check_button.clicked.connect(self.check)
        self.result = QLabel(_tr("Leave the interpreter empty to use FOOTPRINT_PYTHON or .venv."))
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow(_tr("Python interpreter"), self.python)
        form.addRow(_tr("Device"), self.device)
        form.addRow("", self.check_button)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result)
        layout.addWidget(buttons)
        self.resize(560, 200)

    def chosen_python(self) -> str:
        """The interpreter the dialog would use: the field, or the fallbacks when empty."""
        typed = self.python.filePath().strip()
        if typed:
            return str(typed)
        return os.environ.get(ENV_PYTHON, "").strip() or venv_python()

    def check(self) -> str:
        """Check the chosen interpreter, show and return the outcome."""
        from .runner import EngineCheckError, check_engine

        QgsApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            text = _tr("Engine OK: ") + check_engine(self.chosen_python(), use_cache=False)
        except EngineCheckError as err:
            text = str(err)
        finally:
            QgsApplication.restoreOverrideCursor()
        self.result.setText(text)
        return text

    def accept(self) -> None:
        """Store the settings and close."""
        set_engine_python(self.python.filePath())
        set_engine_device(self.device.currentText())
        super().accept()
