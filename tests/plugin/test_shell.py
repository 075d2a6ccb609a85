"""The plugin shell: provider and algorithms, classFactory/initGui/unload, settings, imports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from qgis.core import QgsProcessingParameterDefinition, QgsSettings

from footprint.plugin import settings
from footprint.plugin.algorithms import ALGORITHM_MODULES, algorithm_classes
from footprint.plugin.algorithms.base import FootprintAlgorithm

from .conftest import PACKAGE_PARENT

EXPECTED_IDS = [
    "footprint:detect",
    "footprint:evaluate",
    "footprint:export",
    "footprint:improve",
    "footprint:predict",
    "footprint:rasterizelabels",
    "footprint:train",
    "footprint:vectorize",
]


def run_qgis_script(script: str, profile: Path, timeout: float = 120) -> dict:
    """Run ``script`` in a fresh system Python with QGIS (GUI, offscreen, profile in
    ``profile``); return the JSON it prints last."""
    prelude = f"""
import json, sys
sys.path.insert(0, {str(PACKAGE_PARENT)!r})
sys.path.append("/usr/share/qgis/python/plugins")
from qgis.core import QgsApplication
app = QgsApplication([], True, {str(profile)!r})
app.initQgis()
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        ["/usr/bin/python3", "-c", prelude + script],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_provider_has_exactly_the_eight_algorithms(provider) -> None:
    assert provider.id() == "footprint" and provider.name() == "Footprint"
    assert not provider.icon().isNull()
    assert sorted(alg.id() for alg in provider.algorithms()) == EXPECTED_IDS
    assert len(algorithm_classes()) == len(ALGORITHM_MODULES) == 8


def test_algorithms_share_the_base(provider) -> None:
    for alg in provider.algorithms():
        assert isinstance(alg, FootprintAlgorithm), alg.id()
        assert alg.groupId() == "buildings" and alg.group() == "Building detection"
        assert not alg.icon().isNull()
        copy = alg.createInstance()
        assert type(copy) is type(alg) and copy is not alg
        assert alg.displayName() and alg.shortHelpString(), alg.id()


def test_one_base_gives_plain_engine_errors(
    provider, monkeypatch: pytest.MonkeyPatch, clean_settings: None
) -> None:
    """``engine`` raises a plain QgsProcessingException (QGIS 3.22 shows a traceback for
    subclasses) carrying the engine's message."""
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("FOOTPRINT_PYTHON", "/nonexistent/python")
    for alg in (FootprintAlgorithm(), provider.algorithm("vectorize").create()):
        with pytest.raises(QgsProcessingException) as caught:
            alg.engine("vectorize", ["--help"], None)
        assert type(caught.value) is QgsProcessingException
        assert "/nonexistent/python does not exist" in str(caught.value)


def test_add_advanced_marks_the_parameter_advanced() -> None:
    from qgis.core import QgsProcessingParameterNumber

    class Probe(FootprintAlgorithm):
        NAME, DISPLAY_NAME, HELP = "probe", "Probe", "Help text."

        def initAlgorithm(self, config=None):
            self.add_advanced(QgsProcessingParameterNumber("N", "n"))

    alg = Probe()
    alg.initAlgorithm()
    flags = alg.parameterDefinition("N").flags()
    assert flags & QgsProcessingParameterDefinition.FlagAdvanced
    assert alg.name() == "probe" and alg.shortHelpString() == "Help text."


def test_class_factory_init_gui_and_unload(tmp_path: Path) -> None:
    result = run_qgis_script(
        """
import footprint, processing
from qgis.core import QgsApplication
registry = QgsApplication.processingRegistry()

class Iface:
    def __init__(self):
        self.menu, self.toolbar = [], []
    def mainWindow(self):
        return None
    def addPluginToMenu(self, menu, action):
        self.menu.append((menu, action.text()))
    def removePluginMenu(self, menu, action):
        self.menu.remove((menu, action.text()))
    def addToolBarIcon(self, action):
        self.toolbar.append(action.text())
    def removeToolBarIcon(self, action):
        self.toolbar.remove(action.text())

opened = []
processing.execAlgorithmDialog = lambda alg_id, *args: opened.append(alg_id)
iface = Iface()
plugin = footprint.classFactory(iface)
plugin.initGui()
plugin.initProcessing()  # a second call must not register twice
after_init = {
    "provider": registry.providerById("footprint") is not None,
    "providers": sum(p.id() == "footprint" for p in registry.providers()),
    "menu": list(iface.menu), "toolbar": list(iface.toolbar),
}
plugin.actions[0].trigger()
plugin.actions[1].trigger()
plugin.unload()
headless = footprint.classFactory(None)
headless.initProcessing()
headless_ok = registry.providerById("footprint") is not None
headless.unload()
gone = registry.providerById("footprint") is None
print(json.dumps({"init": after_init, "opened": opened, "menu_after": iface.menu,
                  "toolbar_after": iface.toolbar, "gone": gone, "headless": headless_ok}))
""",
        tmp_path,
    )
    init = result["init"]
    assert init["provider"] and init["providers"] == 1
    assert init["menu"] == [
        ["&Footprint", "Detect buildings…"],
        ["&Footprint", "Improve building model…"],
        ["&Footprint", "Settings…"],
    ]
    assert init["toolbar"] == ["Detect buildings…"]
    assert result["opened"] == ["footprint:detect", "footprint:improve"]
    assert result["menu_after"] == [] and result["toolbar_after"] == []
    assert result["gone"] and result["headless"]


def test_settings_dialog_stores_choices_and_checks_the_engine(tmp_path: Path) -> None:
    result = run_qgis_script(
        f"""
from qgis.PyQt.QtCore import QCoreApplication, QSettings
QCoreApplication.setOrganizationName("FootprintDialogTest")
for fmt in (QSettings.NativeFormat, QSettings.IniFormat):
    QSettings.setPath(fmt, QSettings.UserScope, {str(tmp_path)!r})
from footprint.plugin import settings, settings_dialog
dialog = settings_dialog.SettingsDialog()
dialog.python.setFilePath({str(tmp_path / "no-python")!r})
checked = dialog.check()
dialog.device.setCurrentText("cpu")
full = dialog.make_installer(print, print)
dialog.kind.setCurrentIndex(1)  # Detection only
light = dialog.make_installer(print, print)
kinds = [dialog.kind.itemText(i) for i in range(dialog.kind.count())]
dialog.accept()
print(json.dumps({{"checked": checked, "shown": dialog.result.text(),
                  "python": settings.engine_python(), "device": settings.engine_device(),
                  "full": [full.variant, full.requirements.name],
                  "light": [light.variant, light.requirements.name, light.check_torch],
                  "kinds": kinds, "gpu_hidden": dialog.gpu.isHidden()}}))
""",
        tmp_path / "profile",
    )
    assert "does not exist" in result["checked"] and "bash scripts/setup.sh" in result["checked"]
    assert result["shown"] == result["checked"]
    assert result["python"] == str(tmp_path / "no-python")
    assert result["device"] == "cpu"
    assert result["full"][1] == "requirements.txt" and result["full"][0] in ("", "cpu")
    assert result["light"] == ["detect", "requirements-detect.txt", False]
    assert result["kinds"][0].startswith("Full") and "Detection only" in result["kinds"][1]
    assert result["gpu_hidden"]  # the CUDA choice is the full engine's


def test_engine_python_resolution_order(clean_settings, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOOTPRINT_PYTHON", "/env/python")
    assert settings.engine_python() == "/env/python"
    settings.set_engine_python("/setting/python")
    assert settings.engine_python() == "/setting/python"
    settings.set_engine_python("")
    assert settings.engine_python() == "/env/python"
    monkeypatch.delenv("FOOTPRINT_PYTHON")
    monkeypatch.setattr(settings, "PLUGIN_DIR", tmp_path)
    assert settings.engine_python() == ""
    for layout in (("Scripts", "python.exe"), ("bin", "python")):  # Windows, then POSIX first
        folder = tmp_path / ".venv" / layout[0]
        folder.mkdir(parents=True)
        (folder / layout[1]).write_text("")
        assert settings.engine_python() == str(folder / layout[1])


def test_device_setting(clean_settings) -> None:
    assert settings.engine_device() == "auto"
    settings.set_engine_device("cuda")
    assert settings.engine_device() == "cuda"
    QgsSettings().setValue(settings.KEY_DEVICE, "tpu")
    assert settings.engine_device() == "auto"
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        settings.set_engine_device("tpu")


def test_importing_the_plugin_does_not_import_the_engine_stack(tmp_path: Path) -> None:
    script = f"""
import sys
sys.path.insert(0, {str(PACKAGE_PARENT)!r})
sys.path.append("/usr/share/qgis/python/plugins")
from qgis.core import QgsApplication
app = QgsApplication([], False, {str(tmp_path)!r})
app.initQgis()
import footprint
from footprint.plugin import plugin, provider, runner, layers, settings
from footprint.plugin.algorithms import algorithm_classes
classes = algorithm_classes()
provider.FootprintProvider().loadAlgorithms()
heavy = [m for m in ("torch", "rasterio", "geopandas", "engine") if m in sys.modules]
# the engine's stdlib-only configs and result types give the dialogs their defaults and the
# algorithms their typed results; nothing else of it
engine = [m for m in sys.modules if m.startswith("footprint.engine")]
assert not heavy, heavy
assert sorted(engine) == [
    "footprint.engine", "footprint.engine.config", "footprint.engine.results"
], engine
print(len(classes))
"""
    done = subprocess.run(
        ["/usr/bin/python3", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "8"
