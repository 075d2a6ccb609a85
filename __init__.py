"""Footprint QGIS plugin."""


def classFactory(iface):
    """Return the plugin instance (QGIS's entry point)."""
    from .plugin.plugin import FootprintPlugin

    return FootprintPlugin(iface)
