"""Screenshot of the QGIS desktop while Install engine runs (for the README).

Run inside QGIS at start-up, under a virtual X server (the whole screen is grabbed, the way a
user sees it, not one widget drawn offscreen)::

    xvfb-run -s "-screen 0 1280x800x24" qgis --nologo --noversioncheck
        --profiles-path PROFILES --code scripts/install_screenshot.py   (one line)

with the plugin enabled in that profile. ``FOOTPRINT_SCREENSHOT`` names the PNG to write
(default ``docs/images/install_engine.png``); ``FOOTPRINT_SCREENSHOT_PACKAGES`` a folder of
wheels to install from instead of the real requirements (a quick, small installation: the
picture shows the dialog, not the download).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

REPO = Path(os.environ.get("FOOTPRINT_REPO", Path.cwd()))
OUT = Path(os.environ.get("FOOTPRINT_SCREENSHOT", REPO / "docs" / "images" / "install_engine.png"))
PACKAGES = os.environ.get("FOOTPRINT_SCREENSHOT_PACKAGES", "")


def _installer_factory(dialog: object) -> object:
    from footprint.plugin.installer import Installer

    root = Path(tempfile.mkdtemp(prefix="footprint-shot-")) / "footprint"

    def make(log: object, progress: object) -> Installer:
        if not PACKAGES:
            return dialog.__class__.make_installer(dialog, log, progress)  # type: ignore[attr-defined]
        requirements = root.parent / "requirements.txt"
        requirements.write_text("footprint-fake-dep==1.0\n")
        return Installer(
            root,
            requirements,
            log,  # type: ignore[arg-type]
            progress,  # type: ignore[arg-type]
            pip_args=("--no-index", "--find-links", PACKAGES),
            check_code="import time; time.sleep(30)",
            check_torch=False,  # the small package set has no torch
        )

    return make


def shoot() -> None:
    """Open the settings, start installing, grab the screen a few seconds later, quit."""
    from footprint.plugin.settings_dialog import SettingsDialog

    plugin = plugins.get("footprint")
    if plugin is None:
        print("the footprint plugin is not loaded", file=sys.stderr)
        QgsApplication.exit(1)
        return
    window = iface.mainWindow()
    window.setGeometry(QgsApplication.primaryScreen().availableGeometry())
    iface.openMessageLog()  # the installer's output, tab Footprint
    dialog = SettingsDialog(window)
    dialog.make_installer = _installer_factory(dialog)  # type: ignore[method-assign]
    dialog.show()
    dialog.move(330, 150)
    dialog.install()

    def grab() -> None:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        QgsApplication.primaryScreen().grabWindow(0).save(str(OUT))
        print(f"wrote {OUT}")
        dialog.cancel_install()
        QTimer.singleShot(3000, QgsApplication.instance().quit)

    QTimer.singleShot(int(os.environ.get("FOOTPRINT_SCREENSHOT_AFTER_MS", "12000")), grab)


QTimer.singleShot(4000, shoot)
