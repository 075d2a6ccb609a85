"""Base class of the Footprint algorithms: group, icon, help, and running the engine."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..runner import run_engine
from ..settings import engine_device, plugin_icon


class FootprintAlgorithm(QgsProcessingAlgorithm):
    """Shared behaviour; subclasses set ``NAME``, ``DISPLAY_NAME`` and ``HELP`` (or override)."""

    NAME = ""
    DISPLAY_NAME = ""
    HELP = ""
    GROUP = "Building detection"
    GROUP_ID = "buildings"

    def tr(self, text: str) -> str:
        """Translate ``text`` in the plugin's context."""
        return QCoreApplication.translate("Footprint", text)

    def name(self) -> str:
        """Algorithm id within the provider (``footprint:<name>``)."""
        return self.NAME

    def displayName(self) -> str:
        """Name shown in the toolbox."""
        return self.tr(self.DISPLAY_NAME or self.NAME)

    def group(self) -> str:
        """Toolbox group shown to users."""
        return self.tr(self.GROUP)

    def groupId(self) -> str:
        """Toolbox group id."""
        return self.GROUP_ID

    def icon(self) -> QIcon:
        """The plugin icon."""
        return plugin_icon()

    def shortHelpString(self) -> str:
        """Help shown beside the algorithm dialog: the class's ``HELP``."""
        return self.tr(self.HELP)

    def createInstance(self) -> QgsProcessingAlgorithm:
        """A fresh instance of the same class."""
        return type(self)()

    def add_advanced(self, param: QgsProcessingParameterDefinition) -> bool:
        """Add ``param`` under the dialog's "Advanced parameters"."""
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return self.addParameter(param)

    def device_args(self) -> list[str]:
        """``["--device", <setting>]`` for the commands that take a device."""
        return ["--device", engine_device()]

    def engine(
        self, command: str, args: list[str], feedback: QgsProcessingFeedback | None
    ) -> dict[str, Any]:
        """Run an engine command (see :func:`plugin.runner.run_engine`); return its result."""
        return run_engine(command, args, feedback)
