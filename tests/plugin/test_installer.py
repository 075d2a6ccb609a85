"""Install engine: the installer's steps on a small local requirement set (no 5 GB download),
its failure paths leave nothing behind, and the QgsTask and the settings dialog drive it."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsApplication

from footprint.plugin import installer as installer_module
from footprint.plugin.installer import (
    COMPLETE,
    InstallCancelledError,
    Installer,
    InstallError,
    current_env,
    find_base_python,
    installed_python,
    needs_update,
    remove_engine,
)

FAKE = "footprint_fake_dep"


def make_wheel(folder: Path, version: str, package: str = FAKE, body: str | None = None) -> Path:
    """A pure-Python wheel of ``package`` (default ``footprint-fake-dep``) whose ``VALUE`` is its
    version, or whose ``__init__.py`` is ``body``."""
    dist = f"{package}-{version}"
    files = {
        f"{package}/__init__.py": body if body is not None else f"VALUE = {version!r}\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\n"
        f"Version: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    folder = tmp_path / "packages"
    folder.mkdir()
    make_wheel(folder, "1.0")
    make_wheel(folder, "2.0")
    return folder


def small_installer(
    root: Path, packages: Path, version: str = "1.0", **kwargs: Any
) -> tuple[Installer, list[str]]:
    requirements = packages.parent / "requirements" / f"requirements-{version}.txt"
    requirements.parent.mkdir(parents=True, exist_ok=True)
    requirements.write_text(f"footprint-fake-dep=={version}\n")
    lines: list[str] = []
    options: dict[str, Any] = {
        "pip_args": ("--no-index", "--find-links", str(packages)),
        "check_code": f"import {FAKE}; assert {FAKE}.VALUE == {version!r}",
        "check_torch": False,
        **kwargs,
    }
    return Installer(root, requirements, lines.append, **options), lines


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_install_update_and_remove(tmp_path: Path, packages: Path) -> None:
    root = tmp_path / "profile" / "footprint"
    percents: list[float] = []
    first, log = small_installer(root, packages, progress=percents.append)
    python = first.install()
    assert python == installed_python(root) and os.path.isfile(python)
    env = current_env(root)
    assert env is not None and (env / COMPLETE).is_file()
    assert any("Successfully installed footprint-fake-dep-1.0" in line for line in log)
    assert percents[-1] == 100.0 and percents == sorted(percents)
    assert not needs_update(root, first.requirements)
    second, _ = small_installer(root, packages, "2.0")
    assert needs_update(root, second.requirements)
    newer = second.install()
    assert newer != python and installed_python(root) == newer
    assert not Path(python).exists()  # the old environment went once the new one was complete
    assert any("No hash lock for this platform" in line for line in log)  # none made here
    assert remove_engine(root) == (1, []) and installed_python(root) == "" and _left(root) == []


@pytest.mark.parametrize(
    ("pip_args", "cause"),
    [
        (("--no-index", "--find-links", "{packages}"), "not available"),
        (("--index-url", "http://127.0.0.1:9/simple", "--retries", "1", "--timeout", "2"),
         "cannot be reached"),
    ],
)  # fmt: skip
def test_failed_install_leaves_nothing(
    tmp_path: Path,
    packages: Path,
    pip_args: tuple[str, ...],
    cause: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A package missing from the index, and an index that cannot be reached (no network)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index or links of this machine
    root = tmp_path / "footprint"
    args = tuple(a.format(packages=packages) for a in pip_args)
    broken, _ = small_installer(root, packages, "3.0", pip_args=args)  # no 3.0 anywhere
    with pytest.raises(InstallError) as caught:
        broken.install()
    assert caught.value.step == "install the requirements" and cause in str(caught.value)
    assert _left(root) == [] and installed_python(root) == ""


def test_unwritable_folder_says_so(tmp_path: Path, packages: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    installer, _ = small_installer(blocker / "footprint", packages)
    with pytest.raises(InstallError, match="'prepare the folder'.*cannot be written"):
        installer.install()
    assert blocker.read_text() == "not a folder"


def test_cancel_stops_the_running_step_and_removes_the_environment(
    tmp_path: Path, packages: Path
) -> None:
    root = tmp_path / "footprint"
    slow, _ = small_installer(root, packages, check_code="import time; time.sleep(60)")
    caught: list[BaseException] = []

    def run() -> None:
        try:
            slow.install()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            caught.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while not (slow._process and "sleep" in " ".join(slow._process.args)):  # type: ignore[arg-type]
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.1)
    start = time.monotonic()
    slow.cancel()
    worker.join(30)
    assert time.monotonic() - start < 10
    assert caught and isinstance(caught[0], InstallCancelledError)
    assert _left(root) == [] and installed_python(root) == ""


def test_no_python_that_can_make_an_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(installer_module.sys, "platform", "linux")
    with pytest.raises(InstallError, match="sudo apt install python3-venv.*uv"):
        find_base_python(candidates=[])


def _wait(done: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        QgsApplication.processEvents()
        time.sleep(0.05)


def test_settings_dialog_installs_as_a_task(
    tmp_path: Path, packages: Path, monkeypatch: pytest.MonkeyPatch, clean_settings: None
) -> None:
    """Install engine runs in the task manager with progress, then the dialog shows it."""
    from footprint.plugin import settings_dialog

    root = tmp_path / "footprint"
    monkeypatch.setattr(settings_dialog, "engine_root", lambda: root)
    dialog = settings_dialog.SettingsDialog()
    assert "not installed" in dialog.engine_state.text()
    assert dialog.install_button.text() == "Install engine"
    assert not dialog.remove_button.isEnabled()
    monkeypatch.setattr(
        dialog, "make_installer", lambda log, progress: small_installer(root, packages,
                                                                         progress=progress)[0]
    )  # fmt: skip
    monkeypatch.setattr(dialog, "check", lambda: "checked")
    wanted = packages.parent / "requirements" / "requirements-1.0.txt"
    monkeypatch.setattr(settings_dialog, "requirements_file", lambda: wanted)
    dialog.install()
    assert dialog.task is not None and not dialog.install_button.isEnabled()
    _wait(lambda: dialog.task is None)
    assert "Engine installed: " in dialog.result.text()
    assert "installed in" in dialog.engine_state.text() and dialog.remove_button.isEnabled()
    assert installed_python(root) and dialog.progress.value() == 100
    wanted.write_text("footprint-fake-dep==2.0\n")  # a new plugin version's requirements
    dialog.show_engine_state()
    assert dialog.install_button.text() == "Update engine"
    assert "needs other packages" in dialog.engine_state.text()
    dialog.remove()
    assert installed_python(root) == "" and "not installed" in dialog.engine_state.text()


@pytest.mark.skipif(
    not os.environ.get("FOOTPRINT_TEST_REAL_INSTALL"),
    reason="downloads and installs the real requirements (~6 GB, minutes): run by hand with"
    " FOOTPRINT_TEST_REAL_INSTALL=1 (recorded in README.md)",
)
def test_real_install_into_a_fresh_profile_then_detect(tmp_path: Path) -> None:
    """The real requirements into a fresh QGIS profile, then detect through qgis_process with
    nothing else to find the engine by (no FOOTPRINT_PYTHON, no .venv in the plugin folder)."""
    import shutil
    import subprocess

    from .conftest import REPO
    from .helpers import json_tail, make_scene, synthetic_model

    home = tmp_path / "home"
    profile = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default"
    lines: list[str] = []
    start = time.monotonic()
    python = Installer(profile / "footprint", REPO / "requirements.txt", lines.append).install()
    minutes = (time.monotonic() - start) / 60
    print(f"installed in {minutes:.1f} min: {python}")
    plugins = tmp_path / "plugins" / "footprint"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:  # the plugin as a user has it: no .venv beside it
        (plugins / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, plugins / name)
    binary = subprocess.run(
        ["bash", str(REPO / "scripts" / "qgis_process_path.sh")], capture_output=True, text=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "FOOTPRINT_PYTHON"}
    env.update(HOME=str(home), QGIS_PLUGINPATH=str(plugins.parent), QT_QPA_PLATFORM="offscreen")
    run = [binary, "plugins", "enable", "footprint"]
    assert subprocess.run(run, env=env, capture_output=True, timeout=300).returncode == 0
    scene = make_scene(tmp_path, "scene")
    out = tmp_path / "b.gpkg"
    done = subprocess.run(
        [binary, "--json", "run", "footprint:detect", "--", f"INPUT={scene.raster}",
         f"MODEL={synthetic_model()['OUTPUT']}", f"OUTPUT={out}"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_tail(done.stdout)["results"]["BUILDINGS"] > 0 and out.is_file()


def test_uv_makes_the_environment_where_no_python_can(
    tmp_path: Path, packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No interpreter with venv + ensurepip (Debian without python3-venv): uv makes it."""
    from .conftest import REPO

    uv = REPO / ".venv" / "bin" / "uv"
    if not uv.is_file():
        pytest.skip("uv is not installed in the engine's .venv (requirements-dev.txt has it)")
    monkeypatch.setattr(installer_module, "can_make_venv", lambda python: False)
    monkeypatch.setattr(
        installer_module.shutil, "which", lambda name: str(uv) if name == "uv" else None
    )
    assert find_base_python() == ("uv", str(uv))
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    installer, log = small_installer(tmp_path / "footprint", packages)
    python = installer.install()
    assert installed_python(tmp_path / "footprint") == python
    assert any(line.startswith(f"$ {uv} venv") for line in log)
    assert any(f"{uv} pip install" in line for line in log)
