"""The engine installer as a ``QgsTask``: in the background, with progress, its log in the
message log (tab *Footprint*), cancellable from the task manager or the settings dialog."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .installer import Installer, InstallError

#: The message log tab of the installer's output.
LOG_TAG = "Footprint"


class InstallTask(QgsTask):
    """Runs ``installer.install()``; ``done(python, error)`` is called in the main thread."""

    def __init__(
        self,
        description: str,
        make_installer: Callable[[Callable[[str], None], Callable[[float], None]], Installer],
        done: Callable[[str, str], None],
    ) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.installer = make_installer(self._log, self.setProgress)
        self.done = done
        self.python = ""
        self.error = ""

    def _log(self, line: str) -> None:
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)

    def run(self) -> bool:
        """The installation (a worker thread)."""
        try:
            self.python = self.installer.install()
        except InstallError as err:
            self.error = str(err)
            QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Critical)
            return False
        return True

    def cancel(self) -> None:
        """Kill the running step; the installer removes what it made."""
        self.installer.cancel()
        super().cancel()

    def finished(self, result: bool) -> None:
        """Back in the main thread: tell the dialog."""
        if not result and not self.error:
            self.error = "Installing the engine was cancelled; nothing was left behind."
        self.done(self.python, self.error)
