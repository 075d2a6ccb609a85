"""The settings dialog (Plugins > Footprint > Settings): engine interpreter, device, Check."""

from __future__ import annotations

import os

from qgis.core import QgsApplication, QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication, Qt
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

from .runner import EngineCheckError, check_engine
from .settings import (
    DEVICES,
    ENV_PYTHON,
    KEY_PYTHON,
    engine_device,
    engine_python,
    plugin_icon,
    set_engine_device,
    set_engine_python,
    venv_python,
)


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
