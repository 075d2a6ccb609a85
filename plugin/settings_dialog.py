"""The settings dialog (Plugins > Footprint > Settings): engine interpreter, device, Check, and
Install / Update / Remove engine (:mod:`plugin.installer`, run as a ``QgsTask``)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .envlock import install_running
from .install_task import InstallTask
from .installer import (
    DETECT,
    Installer,
    InstallError,
    current_env,
    installed_variant,
    needs_update,
    remove_engine,
)
from .runner import EngineCheckError, check_engine
from .settings import (
    DEVICES,
    KEY_PYTHON,
    engine_device,
    engine_python,
    engine_root,
    fallback_python,
    plugin_icon,
    requirements_file,
    set_engine_device,
    set_engine_python,
)

#: What Install engine can make: the full engine, or detection only (measured from an empty
#: folder on Linux x86-64, docs/BENCHMARKS.md "Install").
ENGINE_SIZES = ("about 6.4 GB", "about 770 MB")
ENGINE_KINDS = (
    "Full: training, improving and detection (PyTorch, " + ENGINE_SIZES[0] + ")",
    "Detection only: ONNX Runtime, no training (" + ENGINE_SIZES[1] + "; Full adds it later)",
)


def has_nvidia_gpu() -> bool:
    """True when an NVIDIA driver is present (then torch's CUDA build is worth its size)."""
    return Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None


def _tr(text: str) -> str:
    return str(QCoreApplication.translate("Footprint", text))


class SettingsDialog(QDialog):
    """Interpreter path (with a file picker), device, Check, and the engine's installer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(_tr("Footprint settings"))
        self.setWindowIcon(plugin_icon())
        self.python = QgsFileWidget()
        self.python.setStorageMode(QgsFileWidget.GetFile)
        self.python.setFilePath(str(QgsSettings().value(KEY_PYTHON, "", type=str) or ""))
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(engine_device())
        self.check_button = QPushButton(_tr("Check"))
        self.check_button.clicked.connect(self.check)
        self.result = QLabel(
            _tr(
                "Leave the interpreter empty to use FOOTPRINT_PYTHON, .venv or the installed"
                " engine."
            )
        )
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.install_button = QPushButton(_tr("Install engine"))
        self.install_button.clicked.connect(self.install)
        self.remove_button = QPushButton(_tr("Remove engine"))
        self.remove_button.clicked.connect(self.remove)
        self.cancel_button = QPushButton(_tr("Cancel installation"))
        self.cancel_button.clicked.connect(self.cancel_install)
        self.gpu = QCheckBox(_tr("CUDA build of PyTorch (for an NVIDIA GPU; about 4 GB more)"))
        variant = installed_variant(engine_root())
        self.gpu.setChecked(variant == "" if variant is not None else has_nvidia_gpu())
        self.kind = QComboBox()
        self.kind.addItems([_tr(text) for text in ENGINE_KINDS])
        self.kind.setCurrentIndex(1 if variant == DETECT else 0)
        self.kind.currentIndexChanged.connect(lambda _index: self._show_gpu())
        self._show_gpu()
        self.engine_state = QLabel()
        self.engine_state.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.task: InstallTask | None = None
        engine_buttons = QHBoxLayout()
        for button in (self.install_button, self.cancel_button, self.remove_button):
            engine_buttons.addWidget(button)
        form = QFormLayout()
        form.addRow(_tr("Python interpreter"), self.python)
        form.addRow(_tr("Device"), self.device)
        form.addRow("", self.check_button)
        form.addRow(_tr("Engine"), self.engine_state)
        form.addRow("", self.kind)
        form.addRow("", self.gpu)
        form.addRow("", engine_buttons)
        form.addRow("", self.progress)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result)
        layout.addWidget(buttons)
        self.resize(640, 300)
        self.show_engine_state()

    @property
    def light(self) -> bool:
        """True when the detection-only engine is chosen."""
        return bool(self.kind.currentIndex() == 1)

    def _show_gpu(self) -> None:
        """The CUDA choice is the full engine's, on Linux."""
        self.gpu.setVisible(sys.platform.startswith("linux") and not self.light)

    def chosen_python(self) -> str:
        """The interpreter the dialog would use: the field, or the fallbacks when empty."""
        typed = self.python.filePath().strip()
        if typed:
            return str(typed)
        return fallback_python()

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

    def show_engine_state(self) -> None:
        """Installed or not, up to date or not; which buttons make sense now."""
        root = engine_root()
        other = install_running(root) if self.task is None else None
        running = self.task is not None or other is not None
        env = current_env(root)
        self.python.lineEdit().setPlaceholderText(engine_python() or _tr("not found"))
        if self.task is not None:
            state = _tr("installing… (the log is in View > Panels > Log Messages > Footprint)")
        elif other is not None:
            state = _tr("another installation is running (process {pid}); reopen this dialog"
                        " when it has ended").format(pid=other or "?")  # fmt: skip
        elif env is None:
            state = _tr("not installed (Install engine makes it in your QGIS profile: ") + (
                f"{root})"
            )
        elif needs_update(root, requirements_file()):
            state = _tr("installed, but this plugin version needs other packages: Update engine")
        else:
            kind = _tr(" (detection only)") if installed_variant(root) == DETECT else ""
            state = _tr("installed in ") + str(env) + kind
        self.engine_state.setText(state)
        update = env is not None and needs_update(root, requirements_file())
        self.install_button.setText(_tr("Update engine") if update else _tr("Install engine"))
        self.install_button.setEnabled(not running)
        self.remove_button.setEnabled(not running and env is not None)
        self.cancel_button.setEnabled(running)
        self.gpu.setEnabled(not running)
        self.kind.setEnabled(not running)
        self.progress.setVisible(running)

    def make_installer(
        self, log: Callable[[str], None], progress: Callable[[float], None]
    ) -> Installer:
        """The installer the Install button runs (tests replace it with a small one)."""
        light = self.light
        return Installer(
            engine_root(), requirements_file(light), log, progress, gpu=self.gpu.isChecked(),
            light=light,
        )  # fmt: skip

    def install(self) -> None:
        """Start installing (or updating) the engine as a background task."""
        size = ENGINE_SIZES[1 if self.light else 0]
        self.result.setText(_tr("Installing the engine: a few minutes ({size})…").format(size=size))
        self.progress.setValue(0)
        self.task = InstallTask(_tr("Installing the Footprint engine"), self.make_installer,
                                self._installed)  # fmt: skip
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        QgsApplication.taskManager().addTask(self.task)
        self.show_engine_state()

    def cancel_install(self) -> None:
        """Cancel the running installation (what it made is removed)."""
        if self.task is not None:
            self.task.cancel()

    def _installed(self, python: str, error: str) -> None:
        self.task = None
        self.show_engine_state()
        if error:
            self.result.setText(error)
            return
        self.result.setText(_tr("Engine installed: ") + python)
        self.check()

    def remove(self) -> None:
        """Delete the installed engine (not an interpreter of your own)."""
        try:
            gone, kept = remove_engine(engine_root())
        except InstallError as err:
            self.result.setText(str(err))
            return
        finally:
            self.show_engine_state()
        if kept:
            text = _tr("Kept (close what uses it, then remove again): ") + "; ".join(kept)
        else:
            text = _tr("Engine removed.") if gone else _tr("No engine was installed.")
        self.result.setText(text)

    def accept(self) -> None:
        """Store the settings and close."""
        set_engine_python(self.python.filePath())
        set_engine_device(self.device.currentText())
        super().accept()
