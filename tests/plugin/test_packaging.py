"""Packaging: the plugin zip, metadata.txt, pb_tool.cfg, and the zip installed in qgis_process."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

REQUIRED_METADATA = {
    "name": "Footprint",
    "qgisMinimumVersion": "3.22",
    "hasProcessingProvider": "yes",
    "experimental": "True",
    "category": "Analysis",
}
MANDATORY_KEYS = ("description", "about", "version", "author")
#: Required by plugins.qgis.org; left out until the project has public addresses (README).
PUBLISHING_KEYS = ("email", "homepage", "repository", "tracker")
MUST_HAVE = [
    "metadata.txt",
    "__init__.py",
    "plugin/plugin.py",
    "plugin/provider.py",
    "plugin/runner.py",
    "plugin/algorithms/base.py",
    "engine/__main__.py",
    "engine/cli.py",
    "resources/icon.svg",
    "resources/buildings.qml",
    "resources/models/footprint-starter.pt",
    "resources/models/footprint-starter.json",
    "resources/models/footprint_example.model3",
    "resources/models/footprint_improve.model3",
    "README.md",
    "LICENSE",
    "requirements.txt",
    "requirements-lock/linux-x86_64-cp311/engine.txt",
    "scripts/setup.sh",
]


def read_metadata(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case sensitive (qgisMinimumVersion)
    parser.read_string(text)
    return parser["general"]


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_zip.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    version = read_metadata((REPO / "metadata.txt").read_text(encoding="utf-8"))["version"]
    assert path == out / f"footprint-{version}.zip" and path.is_file()
    return path


def test_zip_holds_the_plugin_and_the_engine_in_one_folder(built_zip: Path) -> None:
    names = zipfile.ZipFile(built_zip).namelist()
    assert all(name.startswith("footprint/") for name in names)
    missing = [name for name in MUST_HAVE if f"footprint/{name}" not in names]
    assert not missing
    algorithms = [n for n in names if n.startswith("footprint/plugin/algorithms/")]
    assert len(algorithms) >= 8  # __init__, base and the six algorithms


def test_zip_holds_every_resource_and_the_starter_model_beside_the_engine(built_zip: Path) -> None:
    """Every file of resources/ (styles, the example model, the starter model and its card
    once shipped) is in the zip, where the engine looks for the starter model."""
    names = set(zipfile.ZipFile(built_zip).namelist())
    resources = [p for p in sorted((REPO / "resources").rglob("*")) if p.is_file()]
    missing = [
        str(p) for p in resources if f"footprint/{p.relative_to(REPO).as_posix()}" not in names
    ]
    assert resources and not missing
    starter = "footprint/resources/models/footprint-starter"
    assert (starter + ".pt" in names) == (starter + ".json" in names)


def test_zip_with_the_starter_model_stays_under_20_mb(built_zip: Path) -> None:
    assert built_zip.stat().st_size < 20 * 1024 * 1024


def test_zip_leaves_out_tests_caches_and_environments(built_zip: Path) -> None:
    for name in zipfile.ZipFile(built_zip).namelist():
        parts = name.split("/")
        assert "tests" not in parts and "__pycache__" not in parts, name
        assert ".venv" not in parts and not name.endswith((".pyc", ".pyo")), name
        assert not any(p in (".git", ".pytest_cache", ".ruff_cache", "out", "dist") for p in parts)


def test_metadata_has_what_qgis_and_the_plugin_repository_need(built_zip: Path) -> None:
    text = zipfile.ZipFile(built_zip).read("footprint/metadata.txt").decode("utf-8")
    meta = read_metadata(text)
    for key, value in REQUIRED_METADATA.items():
        assert meta[key] == value, key
    for key in MANDATORY_KEYS:
        assert meta.get(key, "").strip(), key
    for key in PUBLISHING_KEYS:  # a real address, or none at all (never a placeholder)
        assert "example." not in meta.get(key, ""), key
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    left_out = [key for key in PUBLISHING_KEYS if key not in meta]
    assert all(f"`{key}`" in readme for key in left_out), left_out
    assert "scripts/setup.sh" in meta["about"] and "Install engine" in meta["about"]
    assert f"footprint/{meta['icon']}" in zipfile.ZipFile(built_zip).namelist()
    tags = {t.strip() for t in meta["tags"].split(",")}
    assert {"buildings", "footprints", "segmentation", "deep learning", "u-net"} <= tags


def test_pb_tool_config_names_existing_files() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "pb_tool.cfg")
    assert parser["plugin"]["name"] == "footprint"
    files = parser["files"]
    for name in files["python_files"].split() + files["extras"].split():
        assert (REPO / name).is_file(), name
    assert set(files["extra_dirs"].split()) >= {"plugin", "engine", "resources"}
    for folder in files["extra_dirs"].split():
        assert (REPO / folder).is_dir(), folder


def test_installed_zip_loads_in_qgis_process(built_zip: Path, tmp_path: Path) -> None:
    binary = subprocess.run(
        ["bash", str(REPO / "scripts" / "qgis_process_path.sh")], capture_output=True, text=True
    ).stdout.strip()
    if not binary:
        pytest.skip("qgis_process not found (bash scripts/setup.sh installs QGIS)")
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(built_zip).extractall(plugins)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),  # a fresh QGIS profile, not the user's
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_PLUGINPATH": str(plugins),
    }
    enable = subprocess.run(
        [binary, "plugins", "enable", "footprint"], capture_output=True, text=True, env=env
    )
    assert enable.returncode == 0, enable.stdout + enable.stderr
    listed = subprocess.run(
        [binary, "--json", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    provider = json.loads(listed.stdout[listed.stdout.find("{") :])["providers"]["footprint"]
    assert provider["name"] == "Footprint" and provider["is_active"]
    assert sorted(provider["algorithms"]) == [
        f"footprint:{name}"
        for name in (
            "detect",
            "evaluate",
            "export",
            "improve",
            "predict",
            "rasterizelabels",
            "train",
            "vectorize",
        )
    ]
