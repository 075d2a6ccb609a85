"""Footprint engine: building detection in georeferenced imagery, with no QGIS import.

Use it from a shell as ``python -m engine <command>`` or import its modules.
"""

__version__ = "0.1.0"
