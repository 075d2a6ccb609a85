"""Base class of the Footprint algorithms: group, icon, help, running the engine, styles.

QGIS 3.22 shows the message of a plain ``QgsProcessingException`` as is, but a traceback for
any subclass (such as the runner's ``EngineError``), so :meth:`FootprintAlgorithm.engine`
re-raises engine errors as plain ones: the user reads the engine's message. Polygon outputs
get their QML style from ``resources/`` when Processing loads them.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..layers import style_output
from ..runner import run_engine
from ..settings import engine_device, plugin_icon


class FootprintAlgorithm(QgsProcessingAlgorithm):
    """Shared behaviour; subclasses set ``NAME``, ``DISPLAY_NAME`` and ``HELP`` (or override)."""

    NAME = ""
    DISPLAY_NAME = ""
    HELP = ""
    GROUP = "Building detection"
    GROUP_ID = "buildings"

    def __init__(self) -> None:
        super().__init__()
        self._styles: list[tuple[str, str]] = []

    def tr(self, text: str) -> str:
        """Translate ``text`` in the plugin's context."""
        return str(QCoreApplication.translate("Footprint", text))

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
        return bool(self.addParameter(param))

    def device_args(self) -> list[str]:
        """``["--device", <setting>]`` for the commands that take a device."""
        return ["--device", engine_device()]

    def engine(
        self, command: str, args: list[str], feedback: QgsProcessingFeedback | None
    ) -> dict[str, Any]:
        """Run an engine command (see :func:`plugin.runner.run_engine`); return its result.

        Raises:
            QgsProcessingException: a plain one carrying the engine's message.
        """
        try:
            return run_engine(command, args, feedback)
        except QgsProcessingException as err:
            if type(err) is QgsProcessingException:
                raise
            raise QgsProcessingException(str(err)) from None

    def remember_style(self, path: str, style: str) -> str:
        """Style ``path`` with ``resources/<style>`` when Processing loads it; return path."""
        self._styles.append((path, style))
        return path

    def postProcessAlgorithm(
        self, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Attach the style post-processors (main thread, after the run)."""
        for path, style in self._styles:
            style_output(context, path, style)
        self._styles = []
        return {}
