"""Installing the engine's private environment from inside QGIS, in Python only (any OS).

The environment lives in the QGIS profile folder (``<profile>/footprint/engine-<stamp>``), never
inside QGIS's own Python. Steps (:meth:`Installer.install`):

1. find a Python able to make a virtual environment (:func:`find_base_python`): QGIS's own
   interpreter where it has ``venv`` and ``ensurepip`` (Windows, macOS, Debian with
   ``python3-venv``), else another ``python3`` on the PATH, else ``uv`` (which also brings its
   own Python); if there is none the error says what to install;
2. make the environment (``python -m venv``, or ``uv venv``);
3. install the pinned requirements (``requirements.txt``, the list ``scripts/setup.sh`` also
   installs; environment markers keep Linux-only pins off Windows and macOS) with pip (or
   ``uv pip``);
4. check that the engine's packages import (the plugin's *Check*);
5. mark it complete and make it the current engine (the ``current`` file names its folder).

A failed or cancelled step removes the half-made environment, and only a complete one is ever
named in ``current``, so no later run picks up a broken one. *Update* builds the new
environment beside the old one (its folder is named by the requirements' stamp) and switches
only when it is complete; *Remove* deletes them all.

Nothing here imports QGIS: :class:`plugin.install_task.InstallTask` runs it as a ``QgsTask``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Marker written into an environment once every step succeeded (holds the stamp).
COMPLETE = ".footprint-complete"
#: File in the engine folder naming the current environment's folder.
CURRENT = "current"
#: Python code run in a new environment: the engine's packages must import.
CHECK_CODE = (
    "import geopandas, rasterio, segmentation_models_pytorch, shapely, torch;"
    " print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
)
#: Extra index for CPU-only torch builds on Linux (PyPI's Linux torch is the CUDA build).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

#: pip's words for the usual failures, and what they mean for the user.
_CAUSES = (
    (
        ("no space left on device",),
        "there is no space left on the disk; free some (the engine needs about 6 GB) and retry",
    ),
    (
        (
            "temporary failure in name resolution",
            "failed to establish a new connection",
            "connection refused",
            "network is unreachable",
            "connection timed out",
            "read timed out",
            "could not fetch url",
            "name or service not known",
            "max retries exceeded",
        ),
        "there is no network connection to the package index (pypi.org); connect and retry,"
        " or set up your own environment and choose its Python in the settings",
    ),
    (
        ("no matching distribution found", "could not find a version that satisfies"),
        "a pinned package is not available for this platform or from this package index",
    ),
    (
        ("permission denied", "read-only file system"),
        "the profile folder is not writable",
    ),
)


class InstallError(Exception):
    """A step failed: ``step`` names it, the message says why and what to do."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"Installing the engine failed at step '{step}': {why}")
        self.step = step


class InstallCancelledError(InstallError):
    """The user cancelled; nothing was left behind."""

    def __init__(self, step: str) -> None:
        super().__init__(step, "cancelled; nothing was left behind")


def stamp(requirements: Path, variant: str = "") -> str:
    """What an environment was made from: the requirements' hash (and the torch variant)."""
    digest = hashlib.sha256(requirements.read_bytes() + variant.encode()).hexdigest()
    return digest[:16]


def env_python(env: Path) -> Path:
    """The interpreter of the environment ``env`` (Windows or POSIX layout)."""
    windows = env / "Scripts" / "python.exe"
    return windows if windows.exists() or os.name == "nt" else env / "bin" / "python"


def current_env(root: Path) -> Path | None:
    """The complete current environment under ``root``, or None."""
    try:
        name = (root / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    env = root / name
    if name and (env / COMPLETE).is_file() and env_python(env).exists():
        return env
    return None


def installed_python(root: Path) -> str:
    """The interpreter of the current complete environment under ``root``, or ""."""
    env = current_env(root)
    return str(env_python(env)) if env else ""


def _marker(env: Path) -> tuple[str, str]:
    """(stamp, variant) written into a complete environment."""
    parts = (env / COMPLETE).read_text(encoding="utf-8").split()
    return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")


def installed_variant(root: Path) -> str | None:
    """The torch variant of the installed engine (``cpu`` or ""), None when there is none."""
    env = current_env(root)
    return None if env is None else _marker(env)[1]


def needs_update(root: Path, requirements: Path) -> bool:
    """True when an engine is installed but made from other requirements (same variant)."""
    env = current_env(root)
    if env is None:
        return False
    made, variant = _marker(env)
    return made != stamp(requirements, variant)


def remove_engine(root: Path) -> int:
    """Delete every environment under ``root`` and the ``current`` file; how many went."""
    gone = 0
    for env in sorted(root.glob("engine-*")):
        shutil.rmtree(env, ignore_errors=True)
        gone += 1
    (root / CURRENT).unlink(missing_ok=True)
    return gone


def _python_candidates() -> list[str]:
    """Interpreters to try as the base of the environment, QGIS's own first (inside QGIS
    ``sys.executable`` is QGIS itself, so its Python is found from ``sys.base_prefix``)."""
    found: list[str] = []
    prefix = Path(sys.base_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for rel in (f"bin/python{version}", "bin/python3", "bin/python", "python.exe", "python3.exe"):
        found.append(str(prefix / rel))
    for exe in (Path(sys.executable), Path(getattr(sys, "_base_executable", "") or "")):
        if exe.name.lower().startswith("python"):
            found.append(str(exe))
    for name in ("python3", "python"):
        which = shutil.which(name)
        if which:
            found.append(which)
    return [p for p in dict.fromkeys(found) if Path(p).is_file()]


def can_make_venv(python: str) -> bool:
    """True when ``python`` has ``venv`` and ``ensurepip`` (Debian splits them off)."""
    try:
        done = subprocess.run(
            [python, "-c", "import ensurepip, venv"], capture_output=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def find_base_python(candidates: Sequence[str] | None = None) -> tuple[str, str]:
    """(``"venv"``, python) or (``"uv"``, uv path) to make the environment with.

    Raises:
        InstallError: no interpreter can make one and there is no ``uv``; says what to install.
    """
    for python in _python_candidates() if candidates is None else candidates:
        if can_make_venv(python):
            return "venv", python
    uv = shutil.which("uv")
    if uv:
        return "uv", uv
    if sys.platform.startswith("linux"):
        fix = (
            "install the venv module of your system Python (Debian/Ubuntu: sudo apt install"
            " python3-venv) or install uv (https://docs.astral.sh/uv/), then retry"
        )
    else:
        fix = "install Python 3.11 or newer from python.org, or uv (https://docs.astral.sh/uv/)"
    raise InstallError("find a Python", f"no Python able to make a virtual environment; {fix}")


def explain(output: str) -> str:
    """The likely cause of a failed pip/venv run from its output."""
    text = output.lower()
    for words, cause in _CAUSES:
        if any(w in text for w in words):
            return cause
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "see the log: " + (lines[-1][:300] if lines else "no output")


@dataclass
class Installer:
    """Makes the engine environment under ``root`` from ``requirements``.

    ``log`` gets every line of output, ``progress`` percentages (0-100). ``pip_args`` go to
    every pip install (tests: a local package folder with ``--no-index --find-links``);
    ``check_code`` is run in the new environment; ``gpu`` False on Linux installs torch's
    CPU-only build (no CUDA libraries).
    """

    root: Path
    requirements: Path
    log: Callable[[str], None] = print
    progress: Callable[[float], None] = lambda percent: None
    pip_args: Sequence[str] = ()
    check_code: str = CHECK_CODE
    gpu: bool = True
    base: tuple[str, str] | None = None  # (tool, path); None: find_base_python()
    _cancel: threading.Event = field(default_factory=threading.Event)
    _process: subprocess.Popen[str] | None = None

    @property
    def variant(self) -> str:
        """``cpu`` when torch's CPU-only build is asked for on Linux, else ""."""
        return "cpu" if not self.gpu and sys.platform.startswith("linux") else ""

    def cancel(self) -> None:
        """Stop at once (the running step's process is killed); :meth:`install` cleans up."""
        self._cancel.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def install(self) -> str:
        """Run every step; return the new engine interpreter.

        Raises:
            InstallError: a step failed (its name and why); InstallCancelledError.
        """
        new = stamp(self.requirements, self.variant)
        env = self.root / f"engine-{new}"
        step = "prepare the folder"
        try:
            self._make_root(step)
            if env.exists():  # a half-made one from a crash, or a reinstall
                shutil.rmtree(env)
            step = "find a Python"
            self.progress(1.0)
            tool, base = self.base or find_base_python()
            self.log(f"Making the environment with {tool}: {base}")
            step = "make the environment"
            if tool == "uv":
                self._run(step, [base, "venv", "--seed", str(env)])
            else:
                self._run(step, [base, "-m", "venv", str(env)])
            python = str(env_python(env))
            self.progress(8.0)
            step = "install the requirements"
            self._run(step, self._pip(tool, base, python), self._count_progress())
            step = "check the engine"
            self.progress(92.0)
            self._run(step, [python, "-c", self.check_code])
            step = "make it the current engine"
            (env / COMPLETE).write_text(f"{new} {self.variant}\n", encoding="utf-8")
            self._set_current(env)
        except InstallCancelledError:
            shutil.rmtree(env, ignore_errors=True)
            raise
        except InstallError:
            shutil.rmtree(env, ignore_errors=True)
            raise
        except OSError as err:
            shutil.rmtree(env, ignore_errors=True)
            raise InstallError(step, f"{explain(str(err))} ({err})") from err
        for old in self.root.glob("engine-*"):
            if old != env:
                shutil.rmtree(old, ignore_errors=True)
        self.progress(100.0)
        self.log(f"Engine installed: {python}")
        return python

    def _make_root(self, step: str) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-probe"
            probe.write_text("", encoding="utf-8")
            probe.unlink()
        except OSError as err:
            raise InstallError(
                step, f"the folder {self.root} cannot be written ({err.strerror or err})"
            ) from err

    def _pip(self, tool: str, base: str, python: str) -> list[str]:
        args = ["-r", str(self.requirements), *self.pip_args]
        if self.variant == "cpu":
            args += ["--extra-index-url", TORCH_CPU_INDEX]
        if tool == "uv":
            return [base, "pip", "install", "--python", python, *args]
        return [python, "-m", "pip", "install", "--disable-pip-version-check", *args]

    def _count_progress(self) -> Callable[[str], None]:
        """Progress from pip's lines: each package collected, then installing, 8-90%."""
        wanted = sum(
            1
            for line in self.requirements.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "-"))
        )
        seen = [0]

        def on_line(line: str) -> None:
            lower = line.lower()
            if lower.startswith(("collecting", "downloading", "using cached")):
                if lower.startswith("collecting"):
                    seen[0] += 1
                self.progress(8.0 + 70.0 * min(1.0, seen[0] / max(1, wanted)))
            elif lower.startswith("installing collected packages"):
                self.progress(80.0)

        return on_line

    def _set_current(self, env: Path) -> None:
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.write_text(env.name + "\n", encoding="utf-8")
        os.replace(tmp, self.root / CURRENT)

    def _run(
        self, step: str, command: list[str], on_line: Callable[[str], None] | None = None
    ) -> None:
        """Run one step's command, its output to the log; raise InstallError on failure."""
        if self._cancel.is_set():
            raise InstallCancelledError(step)
        self.log("$ " + " ".join(command))
        lines: list[str] = []
        try:
            self._process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                env={**os.environ, "PIP_NO_INPUT": "1", "PYTHONUNBUFFERED": "1"},
            )
        except OSError as err:
            raise InstallError(step, f"{command[0]} could not start ({err})") from err
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.rstrip()
            lines.append(line)
            self.log(line)
            if on_line is not None:
                on_line(line)
        code = self._process.wait()
        self._process.stdout.close()
        self._process = None
        if self._cancel.is_set():
            raise InstallCancelledError(step)
        if code != 0:
            raise InstallError(step, explain("\n".join(lines[-200:])))
