"""The QGIS plugin object: registers the Processing provider and adds menu entries."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication, QgsReferencedRectangle
from qgis.PyQt.QtWidgets import QAction

from .provider import FootprintProvider
from .settings import plugin_icon
from .settings_dialog import SettingsDialog

MENU = "&Footprint"
DETECT_ID = "footprint:detect"
IMPROVE_ID = "footprint:improve"


class FootprintPlugin:
    """Loaded by QGIS through ``classFactory``; ``iface`` is None under qgis_process."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: FootprintProvider | None = None
        self.actions: list[QAction] = []
        self.toolbar_actions: list[QAction] = []

    def initProcessing(self) -> None:
        """Register the Processing provider (also without a GUI)."""
        if self.provider is None:
            self.provider = FootprintProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Register the provider; add a toolbar button and the Plugins > Footprint menu."""
        self.initProcessing()
        if self.iface is None:
            return
        window = self.iface.mainWindow()
        detect = QAction(plugin_icon(), "Detect buildings…", window)
        detect.setToolTip("Detect building footprints in a raster with a trained model")
        detect.triggered.connect(self.open_detect)
        improve = QAction("Improve building model…", window)
        improve.setToolTip("Teach a model the buildings you corrected inside the area checked")
        improve.triggered.connect(self.open_improve)
        settings = QAction("Settings…", window)
        settings.triggered.connect(self.open_settings)
        for action in (detect, improve, settings):
            self.iface.addPluginToMenu(MENU, action)
        self.iface.addToolBarIcon(detect)
        self.actions = [detect, improve, settings]
        self.toolbar_actions = [detect]

    def unload(self) -> None:
        """Remove the menu entries, the toolbar button and the provider."""
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginMenu(MENU, action)
                if action in self.toolbar_actions:
                    self.iface.removeToolBarIcon(action)
            action.deleteLater()
        self.actions, self.toolbar_actions = [], []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def open_detect(self) -> None:
        """Open the Detect algorithm's dialog, its extent set to the map canvas's."""
        import processing

        processing.execAlgorithmDialog(DETECT_ID, self.canvas_parameters())

    def open_improve(self) -> None:
        """Open the Improve algorithm's dialog (a web layer is drawn over the area checked)."""
        import processing

        processing.execAlgorithmDialog(IMPROVE_ID, {})

    def canvas_parameters(self) -> dict[str, Any]:
        """``{"EXTENT": <the map canvas's extent, with its CRS>}``; {} without a canvas."""
        canvas = getattr(self.iface, "mapCanvas", lambda: None)()
        if canvas is None:
            return {}
        extent = canvas.extent()
        if extent.isNull() or extent.isEmpty():
            return {}
        crs = canvas.mapSettings().destinationCrs()
        return {"EXTENT": QgsReferencedRectangle(extent, crs)}

    def open_settings(self) -> None:
        """Open the settings dialog."""
        parent = self.iface.mainWindow() if self.iface is not None else None
        SettingsDialog(parent).exec_()
