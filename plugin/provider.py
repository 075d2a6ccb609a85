"""The Footprint Processing provider (id ``footprint``): the six algorithms and the example
Processing model ``resources/models/footprint_example.model3``."""

from __future__ import annotations

import configparser
import os

from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import algorithm_classes
from .settings import PLUGIN_DIR, plugin_icon, resource_path

#: The example model (rasterize -> train -> detect -> evaluate), in ``resources/``.
EXAMPLE_MODEL = "models/footprint_example.model3"


def plugin_version() -> str:
    """The version in metadata.txt."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PLUGIN_DIR / "metadata.txt", encoding="utf-8")
    return parser.get("general", "version", fallback="?")


def example_model() -> QgsProcessingModelAlgorithm | None:
    """The example model read from ``resources/``; None when the file is missing or bad."""
    path = resource_path(EXAMPLE_MODEL)
    model = QgsProcessingModelAlgorithm()
    return model if os.path.isfile(path) and model.fromFile(path) else None


class FootprintProvider(QgsProcessingProvider):
    """Provides the building detection algorithms and the example model.

    The model's steps (``footprint:train``, ...) are looked up in the Processing registry
    when the model is read, so it is added only once this provider is registered: the
    provider reloads its algorithms when the registry announces it.
    """

    def __init__(self) -> None:
        super().__init__()
        QgsApplication.processingRegistry().providerAdded.connect(self._on_provider_added)

    def _on_provider_added(self, provider_id: str) -> None:
        if provider_id == self.id() and self._registered():
            self.refreshAlgorithms()

    def _registered(self) -> bool:
        return QgsApplication.processingRegistry().providerById(self.id()) is self

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

    def loadAlgorithms(self) -> None:
        """Add one instance of every algorithm class, then the example model (if registered)."""
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
        model = example_model() if self._registered() else None
        if model is not None:
            self.addAlgorithm(model)
