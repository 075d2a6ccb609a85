"""QGIS side of Footprint: the plugin, its Processing provider and algorithms.

Imports only qgis, PyQt and the standard library; the engine runs in its own process.
"""
