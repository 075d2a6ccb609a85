"""Screenshot of a new user's first buildings: an XYZ layer, Detect buildings with only the
extent set, Run (for the README). Run by ``scripts/first_buildings_screenshot.sh``.

Runs inside QGIS at start-up, under a virtual X server (the whole screen is grabbed, the way a
user sees it)::

    xvfb-run -s "-screen 0 1280x800x24" qgis --nologo --noversioncheck
        --profiles-path PROFILES --code scripts/first_buildings_screenshot.py   (one line)

with the plugin enabled in that (fresh) profile. It does what the README's steps say, through
the same user interface: adds the XYZ layer ``FOOTPRINT_SCREENSHOT_XYZ`` (a data source
``type=xyz&url=...``), zooms the map to ``FOOTPRINT_SCREENSHOT_EXTENT`` (``xmin,xmax,ymin,ymax
[EPSG:n]``: the neighbourhood), opens *Plugins > Footprint > Detect buildings...* (its Extent
the map canvas's, every other parameter left as it is: the starter model), presses *Run*, and
once the buildings layer is loaded (styled by the plugin) closes the dialog and grabs the
screen to
``FOOTPRINT_SCREENSHOT`` (default ``docs/images/first_buildings.png``) and writes the detect
step's seconds (Run pressed to the buildings layer loaded) to ``FOOTPRINT_SCREENSHOT_TIMING``
(JSON) when set. ``FOOTPRINT_SCREENSHOT_DEBUG`` (a folder) saves the screen every 10 s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialog, QPushButton
from qgis.utils import iface, plugins

REPO = Path(os.environ.get("FOOTPRINT_REPO", Path.cwd()))
OUT = Path(os.environ.get("FOOTPRINT_SCREENSHOT", REPO / "docs" / "images" / "first_buildings.png"))
XYZ = os.environ["FOOTPRINT_SCREENSHOT_XYZ"]
EXTENT = os.environ["FOOTPRINT_SCREENSHOT_EXTENT"]
TIMING = os.environ.get("FOOTPRINT_SCREENSHOT_TIMING", "")
#: Give up (exit 1) when detect has not finished after this many seconds.
TIMEOUT_S = float(os.environ.get("FOOTPRINT_SCREENSHOT_TIMEOUT_S", "900"))
STATE: dict[str, float] = {}
#: The map's CRS: Web Mercator, as QGIS sets it for an XYZ layer added first.
MAP_CRS = QgsCoordinateReferenceSystem("EPSG:3857")


def fail(message: str) -> None:
    """Say why on stderr and quit QGIS with status 1."""
    print(message, file=sys.stderr, flush=True)
    QgsApplication.exit(1)


def neighbourhood() -> QgsRectangle:
    """``EXTENT`` in the map's CRS (Web Mercator, as with a web layer first)."""
    coords, _, crs = EXTENT.partition(" ")
    xmin, xmax, ymin, ymax = (float(v) for v in coords.split(","))
    source = QgsCoordinateReferenceSystem(crs.strip("[] ") or "EPSG:4326")
    transform = QgsCoordinateTransform(source, MAP_CRS, QgsProject.instance())
    return transform.transformBoundingBox(QgsRectangle(xmin, ymin, xmax, ymax))


def add_imagery() -> None:
    """Add the XYZ layer (as Layer > Add Layer > Add XYZ Layer does) and zoom to the area."""
    window = iface.mainWindow()
    window.setGeometry(QgsApplication.primaryScreen().availableGeometry())
    layer = QgsRasterLayer(XYZ, "Banepa drone imagery (XYZ)", "wms")
    if not layer.isValid():
        fail(f"the XYZ layer {XYZ} is not valid")
        return
    QgsProject.instance().setCrs(MAP_CRS)
    QgsProject.instance().addMapLayer(layer)
    QTimer.singleShot(1000, zoom)


def zoom() -> None:
    """Zoom the map to the neighbourhood; open Detect once it is drawn."""
    iface.mapCanvas().setExtent(neighbourhood())
    iface.mapCanvas().refresh()
    QTimer.singleShot(5000, open_detect)


def open_detect() -> None:
    """Plugins > Footprint > Detect buildings..., then press Run once the dialog shows."""
    plugin = plugins.get("footprint")
    if plugin is None:
        fail("the footprint plugin is not loaded")
        return
    QTimer.singleShot(2000, press_run)
    plugin.open_detect()


def detect_dialog() -> QDialog | None:
    """The Detect dialog, once open."""
    for widget in QApplication.topLevelWidgets():
        if (
            isinstance(widget, QDialog)
            and widget.isVisible()
            and "Algorithm" in type(widget).__name__
        ):
            return widget
    return None


def press_run() -> None:
    """Press the dialog's Run button and start watching for the buildings layer."""
    dialog = detect_dialog()
    if dialog is None:
        QTimer.singleShot(1000, press_run)
        return
    run = next(
        (b for b in dialog.findChildren(QPushButton) if b.text().replace("&", "") == "Run"), None
    )
    if run is None:
        fail("the Detect dialog has no Run button")
        return
    STATE["start"] = time.monotonic()
    run.click()
    QTimer.singleShot(1000, wait_for_buildings)


def buildings_layer() -> QgsVectorLayer | None:
    """The layer Detect loaded into the project, when there is one."""
    for layer in QgsProject.instance().mapLayers().values():
        if isinstance(layer, QgsVectorLayer):
            return layer
    return None


def wait_for_buildings() -> None:
    """Poll until the buildings are loaded; then let the map draw and grab the screen."""
    layer = buildings_layer()
    elapsed = time.monotonic() - STATE["start"]
    if layer is None:
        if elapsed > TIMEOUT_S:
            fail(f"no buildings layer after {elapsed:.0f} s")
        else:
            QTimer.singleShot(1000, wait_for_buildings)
        return
    STATE["detect_s"] = elapsed
    print(f"buildings loaded after {elapsed:.1f} s: {layer.featureCount()} polygons", flush=True)
    if TIMING:
        Path(TIMING).write_text(
            json.dumps({"detect_s": elapsed, "buildings": layer.featureCount()}),
            encoding="utf-8",
        )
    QTimer.singleShot(3000, close_dialog)  # its log shows the run's last lines meanwhile


def close_dialog() -> None:
    """Close the Detect dialog (Close), as the user does to see the map; grab once drawn."""
    dialog = detect_dialog()
    if dialog is not None:
        dialog.reject()
    iface.mapCanvas().refresh()
    QTimer.singleShot(8000, grab)


def grab() -> None:
    """Save the whole screen and quit."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    QgsApplication.primaryScreen().grabWindow(0).save(str(OUT))
    print(f"wrote {OUT}", flush=True)
    QTimer.singleShot(2000, QgsApplication.instance().quit)


def debug_grab() -> None:
    """With ``FOOTPRINT_SCREENSHOT_DEBUG`` (a folder): the screen every 10 s, to see a hang."""
    folder = Path(os.environ["FOOTPRINT_SCREENSHOT_DEBUG"])
    folder.mkdir(parents=True, exist_ok=True)
    print(f"debug: dialog={detect_dialog()!r} state={STATE}", flush=True)
    QgsApplication.primaryScreen().grabWindow(0).save(str(folder / f"{time.time():.0f}.png"))
    QTimer.singleShot(10000, debug_grab)


if os.environ.get("FOOTPRINT_SCREENSHOT_DEBUG"):
    QTimer.singleShot(2000, debug_grab)
QTimer.singleShot(4000, add_imagery)
