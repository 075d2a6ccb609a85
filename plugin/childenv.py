"""The environment for another Python started from QGIS (the engine, the installer's steps).

QGIS's launchers set variables for QGIS's own Python, GDAL and PROJ (OSGeo4W on Windows sets
``PYTHONHOME`` and ``PYTHONPATH``): inherited by another interpreter they make it ignore its
virtual environment's ``pyvenv.cfg`` and import, or install into, QGIS's packages. Every child
Python gets ``os.environ`` without them. No QGIS import here.
"""

from __future__ import annotations

import os

#: Variables QGIS may set for its own Python/GDAL/PROJ that would break another interpreter.
QGIS_ONLY_VARIABLES = (
    "PYTHONPATH",
    "PYTHONHOME",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "PROJ_LIB",
    "PROJ_DATA",
)


def child_environment(**extra: str) -> dict[str, str]:
    """``os.environ`` without :data:`QGIS_ONLY_VARIABLES`, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in QGIS_ONLY_VARIABLES}
    env.update(extra)
    return env
