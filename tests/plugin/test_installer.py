"""Install engine: the installer's steps on a small local requirement set (no 5 GB download),
its failure paths leave nothing behind, and the QgsTask and the settings dialog drive it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsApplication

from footprint.plugin import envlock
from footprint.plugin import installer as installer_module
from footprint.plugin.envlock import LOCK, engine_use, install_running
from footprint.plugin.installer import (
    COMPLETE,
    DETECT,
    DETECT_CHECK_CODE,
    LOCKS,
    TAG_CODE,
    TORCH_CPU_INDEX,
    InstallCancelledError,
    Installer,
    InstallError,
    current_env,
    find_base_python,
    has_hashes,
    installed_python,
    needs_update,
    plan,
    remove_engine,
    variant_requirements,
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
    assert any("runs without hash checks" in line for line in log)  # no lock made here
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
    """Install engine runs in the task manager with progress, then the dialog shows it (and
    the interpreter field's hint names the new engine)."""
    from footprint.plugin import settings, settings_dialog

    root = tmp_path / "footprint"
    monkeypatch.setattr(settings_dialog, "engine_root", lambda: root)
    monkeypatch.setattr(settings, "engine_root", lambda: root)
    monkeypatch.setattr(settings, "venv_python", lambda folder=None: "")
    monkeypatch.delenv("FOOTPRINT_PYTHON")
    dialog = settings_dialog.SettingsDialog()
    assert "not installed" in dialog.engine_state.text()
    assert dialog.python.lineEdit().placeholderText() == "not found"
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
    assert dialog.python.lineEdit().placeholderText() == installed_python(root)
    wanted.write_text("footprint-fake-dep==2.0\n")  # a new plugin version's requirements
    dialog.show_engine_state()
    assert dialog.install_button.text() == "Update engine"
    assert "needs other packages" in dialog.engine_state.text()
    dialog.remove()
    assert installed_python(root) == "" and "not installed" in dialog.engine_state.text()
    assert dialog.result.text() == "Engine removed."


def test_settings_dialog_sees_another_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_settings: None
) -> None:
    """Another dialog, QGIS window or qgis_process installs into the same profile: this
    dialog says so and offers neither Install nor Remove."""
    from footprint.plugin import settings_dialog

    root = tmp_path / "footprint"
    root.mkdir()
    monkeypatch.setattr(settings_dialog, "engine_root", lambda: root)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (root / LOCK).write_text(f"{other.pid} {socket.gethostname()}\n")
        dialog = settings_dialog.SettingsDialog()
        assert f"another installation is running (process {other.pid})" in (
            dialog.engine_state.text()
        )
        assert not dialog.install_button.isEnabled() and not dialog.remove_button.isEnabled()
    finally:
        other.kill()
        other.wait()
    dialog.show_engine_state()
    assert dialog.install_button.isEnabled() and "not installed" in dialog.engine_state.text()


def _profile(tmp_path: Path) -> Path:
    """A fresh QGIS profile's folder under ``tmp_path / "home"``."""
    return tmp_path / "home" / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default"


def _detect_with_installed_plugin(tmp_path: Path, *params: str) -> subprocess.CompletedProcess[str]:
    """The plugin as a user has it (tracked files, no .venv beside it) enabled in the fresh
    profile of :func:`_profile`, then ``footprint:detect`` on a generated scene through
    qgis_process with nothing else to find the engine by (no FOOTPRINT_PYTHON)."""
    import shutil

    from .conftest import REPO
    from .helpers import make_scene

    plugins = tmp_path / "plugins" / "footprint"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        (plugins / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, plugins / name)
    binary = subprocess.run(
        ["bash", str(REPO / "scripts" / "qgis_process_path.sh")], capture_output=True, text=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "FOOTPRINT_PYTHON"}
    env.update(
        HOME=str(tmp_path / "home"), QGIS_PLUGINPATH=str(plugins.parent),
        QT_QPA_PLATFORM="offscreen",
    )  # fmt: skip
    run = [binary, "plugins", "enable", "footprint"]
    assert subprocess.run(run, env=env, capture_output=True, timeout=300).returncode == 0
    scene = make_scene(tmp_path, "scene")
    return subprocess.run(
        [binary, "--json", "run", "footprint:detect", "--", f"INPUT={scene.raster}", *params],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.skipif(
    not os.environ.get("FOOTPRINT_TEST_REAL_INSTALL"),
    reason="downloads and installs the real requirements (~6 GB, minutes): run by hand with"
    " FOOTPRINT_TEST_REAL_INSTALL=1 (recorded in README.md)",
)
def test_real_install_into_a_fresh_profile_then_detect(tmp_path: Path) -> None:
    """The real requirements into a fresh QGIS profile, then detect through qgis_process with
    nothing else to find the engine by (no FOOTPRINT_PYTHON, no .venv in the plugin folder)."""
    from .conftest import REPO
    from .helpers import json_tail, synthetic_model

    lines: list[str] = []
    start = time.monotonic()
    installer = Installer(_profile(tmp_path) / "footprint", REPO / "requirements.txt", lines.append)
    python = installer.install()
    print(f"installed in {(time.monotonic() - start) / 60:.1f} min: {python}")
    out = tmp_path / "b.gpkg"
    done = _detect_with_installed_plugin(
        tmp_path, f"MODEL={synthetic_model()['OUTPUT']}", f"OUTPUT={out}"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_tail(done.stdout)["results"]["BUILDINGS"] > 0 and out.is_file()


@pytest.mark.skipif(
    not os.environ.get("FOOTPRINT_TEST_REAL_INSTALL"),
    reason="downloads and installs the detection-only requirements (~750 MB, a minute): run by"
    " hand with FOOTPRINT_TEST_REAL_INSTALL=1 (recorded in README.md)",
)
def test_real_detection_only_install_then_detect_with_the_starter_model(tmp_path: Path) -> None:
    """The light requirements (no torch) into a fresh QGIS profile, then detect through
    qgis_process with the starter model (its ONNX export): the engine needs no torch."""
    from .conftest import REPO

    lines: list[str] = []
    start = time.monotonic()
    light = Installer(_profile(tmp_path) / "footprint", REPO / "requirements-detect.txt",
                      lines.append, light=True)  # fmt: skip
    python = light.install()
    minutes = (time.monotonic() - start) / 60
    size = sum(f.stat().st_size for f in Path(python).parents[1].rglob("*") if f.is_file())
    print(f"installed in {minutes:.1f} min, {size / 1e6:.0f} MB: {python}")
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0  # the light engine has no torch
    out = tmp_path / "b.gpkg"
    done = _detect_with_installed_plugin(tmp_path, f"OUTPUT={out}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.is_file() and "ONNX export" in done.stdout + done.stderr


def test_the_detection_only_engine_has_its_own_requirements_and_check(tmp_path: Path) -> None:
    """Detection only installs requirements-detect.txt (its lock where there is one), checks
    ONNX Runtime instead of torch, and is marked as its own variant (Full replaces it)."""
    from .conftest import REPO

    full = REPO / "requirements.txt"
    light = Installer(tmp_path / "footprint", variant_requirements(full, DETECT), light=True)
    assert light.variant == DETECT and light.requirements.name == "requirements-detect.txt"
    assert light.check_code == DETECT_CHECK_CODE and not light.check_torch
    assert Installer(tmp_path / "footprint", full).variant in ("", "cpu")
    steps = plan(light.requirements, "linux-x86_64-cp311", DETECT)
    assert [s.name for s in steps] == ["install the requirements"]
    assert steps[0].hashed and steps[0].args[-1].endswith("detect.txt")
    text = (REPO / LOCKS / "linux-x86_64-cp311" / "detect.txt").read_text()
    assert "onnxruntime==" in text and "torch" not in text
    elsewhere = plan(light.requirements, "win32-amd64-cp312", DETECT)  # no lock there
    assert elsewhere[0].args == ("-r", str(light.requirements)) and not elsewhere[0].hashed
    pins = [line for line in light.requirements.read_text().splitlines() if "==" in line]
    assert "onnxruntime==1.32.0" in pins
    assert not any(line.startswith(("torch", "segmentation", "timm")) for line in pins)


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


# --- Item 3: the installer's Pythons ignore QGIS's Python variables and working folder -------

EVIL_MARK = "evil-code-ran"


def plant_evil(folder: Path) -> Path:
    """A ``venv.py`` and a ``pip`` package in ``folder`` that leave a mark and fail."""
    code = (
        f"import pathlib; pathlib.Path({str(folder / EVIL_MARK)!r}).touch(); raise SystemExit(3)\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "venv.py").write_text(code)
    (folder / "ensurepip.py").write_text(code)
    (folder / "pip").mkdir()
    (folder / "pip" / "__init__.py").write_text(code)
    (folder / "pip" / "__main__.py").write_text(code)
    return folder


@pytest.mark.parametrize("where", ["cwd", "PYTHONPATH", "PYTHONHOME"])
def test_installer_ignores_qgis_python_variables_and_working_folder(
    tmp_path: Path, packages: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """OSGeo4W's launchers set PYTHONPATH/PYTHONHOME; QGIS's working folder may hold a
    ``venv.py`` or ``pip/``: none of them may run or steer the installer's Pythons."""
    evil = plant_evil(tmp_path / "qgis-working-folder")
    if where == "cwd":
        monkeypatch.chdir(evil)
    elif where == "PYTHONPATH":
        monkeypatch.setenv("PYTHONPATH", str(evil))
    else:
        monkeypatch.setenv("PYTHONHOME", str(evil))  # no Python's library: breaks any start
    root = tmp_path / "footprint"
    installer, log = small_installer(root, packages)
    python = installer.install()
    assert not (evil / EVIL_MARK).exists()
    assert all(line.split()[2] == "-I" for line in log if line.startswith("$ ") and " -m " in line)
    done = subprocess.run([python, "-I", "-c", f"import {FAKE}; print({FAKE}.__file__)"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.startswith(str(root))


# --- Item 4: one installation at a time; a working environment is never removed in use -------


def _start_slow(installer: Installer) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``installer`` (whose check sleeps) in a thread until its check step runs."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            installer.install()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            caught.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while not (installer._process and "sleep" in " ".join(installer._process.args)):  # type: ignore[arg-type]
        assert time.monotonic() < deadline and worker.is_alive(), caught
        time.sleep(0.1)
    return worker, caught


def test_a_second_installation_waits_for_the_first(tmp_path: Path, packages: Path) -> None:
    """Two dialogs (or QGIS windows) installing into one profile: the second is refused with
    a clear message while the first runs, and leaves the first's work alone."""
    root = tmp_path / "footprint"
    first, _ = small_installer(root, packages, check_code="import time; time.sleep(60)")
    worker, caught = _start_slow(first)
    assert install_running(root) == os.getpid()
    second, _ = small_installer(root, packages, "2.0")
    with pytest.raises(InstallError, match="another installation into .* is running") as err:
        second.install()
    assert err.value.step == "wait for the other installation"
    assert [p.name.startswith(".building-") for p in root.iterdir()].count(True) == 1
    with pytest.raises(InstallError, match="another installation"):
        remove_engine(root)
    first.cancel()
    worker.join(30)
    assert caught and isinstance(caught[0], InstallCancelledError)
    assert install_running(root) is None and _left(root) == []
    assert second.install() == installed_python(root)


def test_a_dead_installers_lock_and_leftovers_are_taken_over(
    tmp_path: Path, packages: Path
) -> None:
    """QGIS crashed mid-install: its lock (a dead pid) and half-built folder are cleared."""
    root = tmp_path / "footprint"
    root.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (root / LOCK).write_text(f"{gone.pid} {socket.gethostname()}\n")
    (root / ".building-0123-1").mkdir()
    (root / ".building-0123-1" / "half").write_text("")
    installer, _ = small_installer(root, packages)
    python = installer.install()
    assert python == installed_python(root)
    assert _left(root) == ["current", Path(python).parent.parent.name]


def test_a_live_installers_lock_is_respected(tmp_path: Path, packages: Path) -> None:
    root = tmp_path / "footprint"
    root.mkdir()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        (root / LOCK).write_text(f"{alive.pid} {socket.gethostname()}\n")
        installer, _ = small_installer(root, packages)
        with pytest.raises(InstallError, match=f"another installation .*process {alive.pid}"):
            installer.install()
        assert _left(root) == [LOCK]
    finally:
        alive.kill()
        alive.wait()
    assert installer.install() == installed_python(root)


def test_reinstalling_keeps_the_working_environment_until_the_new_one_is_complete(
    tmp_path: Path, packages: Path
) -> None:
    """Re-installing the same packages: a failure leaves the working engine as it was; a
    success switches to the new one and only then removes the old."""
    root = tmp_path / "footprint"
    first, _ = small_installer(root, packages)
    python = first.install()
    env = current_env(root)
    assert env is not None
    broken, _ = small_installer(root, packages, check_code="raise SystemExit(1)")
    with pytest.raises(InstallError, match="'check the engine'"):
        broken.install()
    assert installed_python(root) == python and current_env(root) == env
    assert subprocess.run([python, "-c", f"import {FAKE}"]).returncode == 0
    again, _ = small_installer(root, packages)
    newer = again.install()
    assert newer != python and installed_python(root) == newer
    assert Path(newer).parent.parent.name == env.name + "-2" and not env.exists()


@pytest.mark.parametrize("how", ["runner", "process"])
def test_an_environment_in_use_is_kept(
    tmp_path: Path, packages: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """An update (or Remove engine) while an engine runs from the old environment keeps it;
    the next one removes it once nothing uses it. ``runner``: the runner's mark of a running
    engine (any OS); ``process``: a process started with its interpreter (Linux's /proc)."""
    root = tmp_path / "footprint"
    first, _ = small_installer(root, packages)
    python = first.install()
    old = current_env(root)
    assert old is not None
    with contextlib.ExitStack() as stack:
        if how == "runner":
            monkeypatch.setattr(envlock, "_proc_users", lambda env: [])
            stack.enter_context(engine_use(python))
        else:
            engine = subprocess.Popen([python, "-c", "import time; time.sleep(60)"])
            stack.callback(engine.wait)
            stack.callback(engine.kill)
        second, log = small_installer(root, packages, "2.0")
        newer = second.install()
        assert installed_python(root) == newer and Path(python).exists()
        assert any(
            line.startswith(f"Kept {old.name}: in use by the running engine") for line in log
        )
        gone, kept = remove_engine(root)
        assert gone == 1 and len(kept) == 1 and kept[0].startswith(old.name)
        assert installed_python(root) == "" and Path(python).exists()
    assert remove_engine(root) == (1, []) and _left(root) == []


# --- Item 5: hash locks, torch from its own index in its own step, the build checked --------


def _lock_line(wheel: Path, name: str, version: str, hashed: bool = True) -> str:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"{name}=={version}" + (f" \\\n    --hash=sha256:{digest}\n" if hashed else "\n")


def locked_installer(
    tmp_path: Path, cuda: str | None, torch_lock: str = "torch.txt", hashed: bool = True,
    **kwargs: Any,
) -> tuple[Installer, list[str]]:  # fmt: skip
    """An installer whose requirements have a hash lock for this platform: a fake torch (its
    ``torch.version.cuda`` is ``cuda``) in ``torch_lock`` and the fake dependency in
    ``engine.txt``."""
    folder = tmp_path / "locked-packages"
    folder.mkdir()
    version = "2.14.1" if torch_lock == "torch.txt" else "2.14.1+cpu"
    body = f"__version__ = {version!r}\nclass version:\n    cuda = {cuda!r}\n"
    torch = make_wheel(folder, version, "torch", body)
    dep = make_wheel(folder, "1.0")
    requirements = tmp_path / "plugin" / "requirements.txt"
    tag = subprocess.run([sys.executable, "-I", "-c", TAG_CODE], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    locks = requirements.parent / LOCKS / tag
    locks.mkdir(parents=True)
    requirements.write_text("torch==2.14.1\nfootprint-fake-dep==1.0\n")
    (locks / torch_lock).write_text(_lock_line(torch, "torch", version, hashed))
    (locks / "engine.txt").write_text(_lock_line(dep, "footprint-fake-dep", "1.0"))
    lines: list[str] = []
    options: dict[str, Any] = {
        "pip_args": ("--no-index", "--find-links", str(folder)),
        "check_code": f"import {FAKE}, torch",
        **kwargs,
    }
    return Installer(tmp_path / "footprint", requirements, lines.append, **options), lines


def _pip_runs(log: list[str]) -> list[str]:
    return [line for line in log if line.startswith("$ ") and " pip install " in line]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch variants are Linux's")
def test_installs_torch_then_the_rest_from_hash_locks(tmp_path: Path) -> None:
    installer, log = locked_installer(tmp_path, cuda="13.0")
    python = installer.install()
    torch_run, rest_run = _pip_runs(log)
    for run in (torch_run, rest_run):
        assert "--require-hashes" in run and "--no-deps" in run and "--only-binary :all:" in run
        assert "--extra-index-url" not in run and "--retries 1" in run
    assert "torch.txt" in torch_run and "engine.txt" in rest_run
    assert not any("without hash checks" in line for line in log)
    assert installed_python(tmp_path / "footprint") == python


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch variants are Linux's")
def test_a_package_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    installer, _ = locked_installer(tmp_path, cuda="13.0")
    engine_lock = next((installer.requirements.parent / LOCKS).glob("*/engine.txt"))
    engine_lock.write_text(re.sub(r"sha256:\w+", "sha256:" + "0" * 64, engine_lock.read_text()))
    with pytest.raises(InstallError, match="does not match the hash in the plugin's lock"):
        installer.install()
    assert _left(tmp_path / "footprint") == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch variants are Linux's")
@pytest.mark.parametrize(("gpu", "cuda", "says"), [
    (False, "13.0", "is a CUDA build .CUDA 13.0., not the CPU-only build asked for"),
    (True, None, "is the CPU-only build, not the CUDA build asked for"),
])  # fmt: skip
def test_a_torch_build_other_than_asked_for_is_refused(
    tmp_path: Path, gpu: bool, cuda: str | None, says: str
) -> None:
    """The CUDA box unticked, yet a CUDA torch came (the index gave another build): refused,
    and nothing is left (and the other way round)."""
    lock = "torch.txt" if gpu else "torch-cpu.txt"
    installer, log = locked_installer(tmp_path, cuda=cuda, torch_lock=lock, gpu=gpu)
    with pytest.raises(InstallError, match=says) as caught:
        installer.install()
    assert caught.value.step == "check the PyTorch build"
    assert _left(tmp_path / "footprint") == []
    if not gpu:
        assert f"--index-url {TORCH_CPU_INDEX}" in _pip_runs(log)[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch variants are Linux's")
def test_an_unreachable_torch_index_fails_fast_and_says_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyTorch's CPU index cannot be reached: one short try, then an error naming that index
    and what to do; no torch from anywhere else (here a local folder that pip's settings name,
    holding a torch of that version), no minutes of retries."""
    down = "http://127.0.0.1:9/whl/cpu"  # nothing listens on the discard port
    installer, log = locked_installer(
        tmp_path, cuda="13.0", torch_lock="torch-cpu.txt", hashed=False, gpu=False,
        pip_args=(), cpu_index=down,
    )  # fmt: skip
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index or links of this machine
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "locked-packages"))  # has that torch
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(InstallError) as caught:
        installer.install()
    message = str(caught.value)
    assert caught.value.step == "install PyTorch" and f"({down}) cannot be reached" in message
    assert "tick 'CUDA build of PyTorch'" in message
    assert any("(from versions: none)" in line for line in log)
    assert not any("total=2" in line for line in log)  # pip's default is 5 retries
    assert len(_pip_runs(log)) == 1 and _left(tmp_path / "footprint") == []


def test_the_committed_lock_matches_requirements_txt() -> None:
    """requirements.txt (the human list) and the lock agree: every pin is locked at the same
    version, with a hash; torch's packages are in the torch step only."""
    from .conftest import REPO

    locks = REPO / LOCKS / "linux-x86_64-cp311"
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    locked = {}
    for name in ("engine.txt", "torch.txt"):
        assert has_hashes(locks / name)
        text = (locks / name).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "==" in line and not line.startswith("#"):
                package, version = line.split()[0].split("==")
                locked[package] = (version, name)
    for package, version in pins.items():
        assert locked[package][0] == version, package
    assert {p for p, (_, f) in locked.items() if f == "torch.txt"} >= {"torch", "torchvision"}
    assert not {p for p, (_, f) in locked.items() if f == "engine.txt"} & {"torch", "triton"}
    cpu = plan(REPO / "requirements.txt", "linux-x86_64-cp311", "cpu")
    assert [s.name for s in cpu] == ["install PyTorch", "install the requirements"]
    assert cpu[0].index == TORCH_CPU_INDEX and cpu[0].complete and cpu[1].index is None
    elsewhere = plan(REPO / "requirements.txt", "win32-amd64-cp312", "cpu")  # no lock there
    assert elsewhere[0].args == ("torch==2.14.1", "torchvision==0.29.2")
    assert elsewhere[0].index == TORCH_CPU_INDEX and elsewhere[0].complete
    assert elsewhere[1].args[-1].endswith("requirements.txt") and not elsewhere[1].complete
    assert not any(s.hashed for s in elsewhere)


def test_the_runner_marks_the_environment_of_a_running_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While run_engine runs an engine of an installed environment, that environment counts
    as in use (its mark goes when the engine ends, even on failure)."""
    from footprint.plugin import runner

    env = tmp_path / "footprint" / "engine-0123"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    (env / COMPLETE).write_text("0123 \n")
    seen: list[list[int] | None] = []

    def follow(argv: list[str], cwd: str, feedback: object = None) -> dict[str, Any]:
        seen.append(envlock.engine_users(env))
        raise runner.EngineError("the engine failed")

    monkeypatch.setattr(runner, "check_engine", lambda python: "ok")
    monkeypatch.setattr(runner, "follow_process", follow)
    monkeypatch.setattr(envlock, "_proc_users", lambda env: [])
    with pytest.raises(runner.EngineError):
        runner.run_engine("detect", [], python=str(env / "bin" / "python"))
    assert seen == [[os.getpid()]] and envlock.engine_users(env) == []
