"""The Footprint Processing provider (id ``footprint``)."""

from __future__ import annotations

import configparser

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import algorithm_classes
from .settings import PLUGIN_DIR, plugin_icon, resource_path

#: The vector formats the engine writes, GeoPackage first (the engine's own list is
#: ``engine.geo.vectors.DRIVERS``; the plugin runs in QGIS's Python, without the engine).
VECTOR_EXTENSIONS = ("gpkg", "shp", "geojson", "fgb", "sqlite")


def plugin_version() -> str:
    """The version in metadata.txt."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PLUGIN_DIR / "metadata.txt", encoding="utf-8")
    return parser.get("general", "version", fallback="?")


class FootprintProvider(QgsProcessingProvider):
    """Provides the building detection algorithms."""

    def id(self) -> str:
        """Provider id: algorithms are ``footprint:<name>``."""
        return "footprint"

    def name(self) -> str:
        """Short name shown in the toolbox."""
        return "Footprint"

    def longName(self) -> str:
        """Name with version."""
        return f"Footprint {plugin_version()} (building detection)"

    def versionInfo(self) -> str:
        """The plugin version."""
        return plugin_version()

    def icon(self) -> QIcon:
        """The plugin icon."""
        return plugin_icon()

    def svgIconPath(self) -> str:
        """Path of the SVG icon."""
        return resource_path("icon.svg")

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        """The vector formats the engine writes (``engine.geo.vectors.DRIVERS``): the file
        dialogs offer only these (elsewhere, e.g. ``qgis_process``, the engine refuses another
        extension before any work)."""
        return list(VECTOR_EXTENSIONS)

    def loadAlgorithms(self) -> None:
        """Add one instance of every algorithm class."""
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
