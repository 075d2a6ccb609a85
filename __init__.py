"""Footprint QGIS plugin."""

from typing import Any


def classFactory(iface: Any) -> Any:  # QGIS passes its QgisInterface
    """Return the plugin instance (QGIS's entry point)."""
    from .plugin.plugin import FootprintPlugin

    return FootprintPlugin(iface)
