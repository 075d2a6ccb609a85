"""Installing the engine's private environment from inside QGIS, in Python only (any OS).

The environment lives in the QGIS profile folder (``<profile>/footprint/engine-<stamp>``), never
inside QGIS's own Python. Steps (:meth:`Installer.install`), under an exclusive install lock
(:class:`plugin.envlock.InstallLock`: a second dialog, window or QGIS gets a clear "wait"):

1. find a Python able to make a virtual environment (:func:`find_base_python`): QGIS's own
   interpreter where it has ``venv`` and ``ensurepip`` (Windows, macOS, Debian with
   ``python3-venv``), else another ``python3`` on the PATH, else ``uv`` (which also brings its
   own Python); if there is none the error says what to install;
2. make the environment under a temporary name (``.building-<stamp>-<pid>``; ``python -m venv``
   or ``uv venv``);
3. install PyTorch, then the other packages, each from a lock with hashes
   (``requirements-lock/<platform>/``: ``torch.txt`` from PyPI, or ``torch-cpu.txt`` from
   PyTorch's CPU index only, then ``engine.txt``; ``--no-deps``, wheels only); a platform
   without a lock installs ``requirements.txt``'s pins (the list ``scripts/setup.sh`` installs)
   and says so in the log;
4. check it: ``pip check``, the engine's packages import, and torch is the build asked for;
5. rename it into place (``engine-<stamp>``, ``-2``... when taken), mark it complete and make it
   the current engine (the ``current`` file names its folder), then remove the older
   environments that no running engine uses (:func:`plugin.envlock.engine_users`).

Every Python runs isolated (``-I``), in the environment's folder, with QGIS's Python variables
left out (:func:`plugin.childenv.child_environment`). A failed or cancelled step removes the
half-made environment, and the working one stays in use until the new one is complete.
*Remove* deletes every environment that no engine uses.

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

from .childenv import child_environment
from .envlock import (
    COMPLETE,
    TRASH,
    InstallLock,
    LockHeldError,
    discard,
    engine_users,
)

#: File in the engine folder naming the current environment's folder.
CURRENT = "current"
#: Prefix of an environment being built (renamed to ``engine-<stamp>`` once complete).
BUILDING = ".building-"
#: Folder of the hash locks, beside ``requirements.txt``; one sub-folder per platform.
LOCKS = "requirements-lock"
#: Python code run in a new environment: the engine's packages must import.
CHECK_CODE = (
    "import geopandas, rasterio, segmentation_models_pytorch, shapely, torch;"
    " print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
)
#: The same for the detection-only engine (ONNX Runtime instead of torch).
DETECT_CHECK_CODE = (
    "import geopandas, onnxruntime, rasterio, shapely, skimage;"
    " print('onnxruntime', onnxruntime.__version__)"
)
#: The variant of the detection-only engine, and its requirements beside ``requirements.txt``.
DETECT, DETECT_REQUIREMENTS = "detect", "requirements-detect.txt"
#: Python code printing the lock folder name (platform, machine, Python) of its interpreter.
TAG_CODE = (
    "import platform, sys;"
    " print('%s-%s-cp%d%d' % (sys.platform, platform.machine().lower(), *sys.version_info[:2]))"
)
#: Python code printing torch's CUDA version (``None``: the CPU-only build).
TORCH_BUILD_CODE = "import torch; print('torch-build', torch.__version__, torch.version.cuda)"
#: PyTorch's index of CPU-only builds (PyPI's Linux torch is the CUDA build).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: pip fails fast on an index it cannot reach (its default: 5 retries of 15 s per package).
FAIL_FAST = ("--retries", "1", "--timeout", "15")
#: The same for uv (environment variables).
UV_FAIL_FAST = {"UV_HTTP_RETRIES": "1", "UV_HTTP_TIMEOUT": "15"}

_NETWORK = (
    "temporary failure in name resolution",
    "failed to establish a new connection",
    "connection refused",
    "network is unreachable",
    "connection timed out",
    "read timed out",
    "could not fetch url",
    "name or service not known",
    "max retries exceeded",
    "failed to fetch",
    "error sending request",
)
#: pip's words for the usual failures, and what they mean for the user.
_CAUSES = (
    (
        ("no space left on device",),
        "there is no space left on the disk; free some (the engine needs about 6 GB) and retry",
    ),
    (
        ("do not match the hashes", "hash mismatch"),
        "a downloaded package does not match the hash in the plugin's lock file (a damaged"
        " download, or a package index serving other files); nothing was installed: retry, and"
        " report it if it persists",
    ),
    (
        ("hashes are required in --require-hashes mode",),
        "the plugin's lock file misses a package (please report it)",
    ),
    (
        _NETWORK,
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
    """What an environment was made from: the hash of the requirements, of the locks beside
    them (:data:`LOCKS`) and of the torch variant."""
    digest = hashlib.sha256(requirements.read_bytes())
    locks = requirements.parent / LOCKS
    for lock in sorted(locks.rglob("*.txt")) if locks.is_dir() else []:
        digest.update(lock.relative_to(locks).as_posix().encode() + lock.read_bytes())
    digest.update(variant.encode())
    return digest.hexdigest()[:16]


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
    """The variant of the installed engine (``cpu``: torch's CPU-only build; :data:`DETECT`:
    detection only; "": torch from PyPI), None when there is none."""
    env = current_env(root)
    return None if env is None else _marker(env)[1]


def variant_requirements(requirements: Path, variant: str) -> Path:
    """The requirements a ``variant`` installs: ``requirements`` (the full engine's), or
    :data:`DETECT_REQUIREMENTS` beside it for the detection-only engine."""
    return requirements.with_name(DETECT_REQUIREMENTS) if variant == DETECT else requirements


def needs_update(root: Path, requirements: Path) -> bool:
    """True when an engine is installed but made from other requirements (same variant;
    ``requirements``: the full engine's, see :func:`variant_requirements`)."""
    env = current_env(root)
    if env is None:
        return False
    made, variant = _marker(env)
    return made != stamp(variant_requirements(requirements, variant), variant)


def _sweep(root: Path) -> None:
    """Remove what crashed installs left (half-built and half-deleted environments); only
    called under the install lock, so nobody is building them."""
    for debris in [*root.glob(BUILDING + "*"), *root.glob(TRASH + "*")]:
        shutil.rmtree(debris, ignore_errors=True)


def _lock(root: Path, step: str) -> InstallLock:
    """The install lock of ``root``, taken.

    Raises:
        InstallError: another installation into ``root`` runs (which, and what to do).
    """
    lock = InstallLock(root)
    try:
        lock.acquire()
    except LockHeldError as err:
        raise InstallError(
            step,
            f"another installation into {root} is running ({err}); wait until it ends, or"
            " cancel it there, then retry",
        ) from err
    return lock


def remove_unused(
    root: Path, keep: Path | None, log: Callable[[str], None]
) -> tuple[int, list[str]]:
    """Delete the environments under ``root`` (but ``keep``) that no running engine uses;
    (how many went, a line for each one kept). Call it under the install lock."""
    gone, kept = 0, []
    for env in sorted(root.glob("engine-*")):
        if env == keep:
            continue
        users = engine_users(env)
        if users is None:
            why = "cannot tell whether an engine uses it"
        elif users:
            why = "in use by the running engine (process " + ", ".join(map(str, users)) + ")"
        elif not discard(env):
            why = "it cannot be deleted now (in use?)"
        else:
            gone += 1
            continue
        kept.append(f"{env.name}: {why}; the next installation or Remove engine deletes it")
        log("Kept " + kept[-1])
    _sweep(root)
    return gone, kept


def remove_engine(root: Path, log: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Delete the environments under ``root`` that no engine uses, and the ``current`` file;
    (how many went, a line for each one kept because it is in use).

    Raises:
        InstallError: an installation into ``root`` is running.
    """
    if not root.is_dir():
        return 0, []
    lock = _lock(root, "remove the engine")
    try:
        (root / CURRENT).unlink(missing_ok=True)
        return remove_unused(root, None, log)
    finally:
        lock.release()


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
            [python, "-I", "-c", "import ensurepip, venv"],
            capture_output=True,
            timeout=60,
            env=child_environment(),
            cwd=os.path.dirname(python) or None,
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


def unreachable(index: str | None, cpu_torch: bool = False) -> str:
    """What to do when the package index ``index`` (None: pip's configured one; ``cpu_torch``:
    the index of torch's CPU-only builds) cannot be reached."""
    if cpu_torch:
        return (
            f"PyTorch's package index of CPU-only builds ({index}) cannot be reached from this"
            " computer; check the network connection (and the proxy: pip reads HTTPS_PROXY)"
            " and retry, or tick 'CUDA build of PyTorch' to install PyPI's torch instead (about"
            " 4 GB more), or set up your own environment and choose its Python in the settings"
        )
    name = index or "pypi.org, or the index of your pip configuration"
    return (
        f"the package index ({name}) cannot be reached from this computer; check the network"
        " connection (and the proxy: pip reads HTTPS_PROXY) and retry, or set up your own"
        " environment and choose its Python in the settings"
    )


def explain(output: str, index: str | None = None, cpu_torch: bool = False) -> str:
    """The likely cause of a failed pip/venv run from its output (``index``, ``cpu_torch``:
    the step's package index, see :func:`unreachable`)."""
    text = output.lower()
    for words, cause in _CAUSES:
        if any(w in text for w in words):
            return unreachable(index, cpu_torch) if words is _NETWORK else cause
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "see the log: " + (lines[-1][:300] if lines else "no output")


def _requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file (continuations joined, no comments)."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def has_hashes(path: Path) -> bool:
    """True when every requirement in ``path`` carries a ``--hash``."""
    lines = _requirement_lines(path)
    return bool(lines) and all("--hash=" in line for line in lines)


@dataclass(frozen=True)
class PipStep:
    """One pip run: ``args`` (``-r FILE`` or packages) from ``index`` (None: pip's own)."""

    name: str
    args: tuple[str, ...]
    index: str | None
    hashed: bool  # --require-hashes
    complete: bool  # --no-deps: the file lists every package
    count: int  # packages, for the progress


def _lock_step(name: str, lock: Path, index: str | None) -> PipStep:
    return PipStep(name, ("-r", str(lock)), index, has_hashes(lock), True,
                   len(_requirement_lines(lock)))  # fmt: skip


def _torch_pins(requirements: Path) -> tuple[str, ...]:
    """The torch and torchvision lines of ``requirements``."""
    names = ("torch==", "torchvision==")
    return tuple(line for line in _requirement_lines(requirements) if line.startswith(names))


def plan(
    requirements: Path, tag: str, variant: str, cpu_index: str = TORCH_CPU_INDEX
) -> list[PipStep]:
    """The pip runs that install the engine on platform ``tag`` (``variant`` ``cpu``: torch's
    CPU-only build, from ``cpu_index`` alone; :data:`DETECT`: ``requirements`` are the
    detection-only engine's, no torch)."""
    folder = requirements.parent / LOCKS / tag
    if variant == DETECT:
        lock = folder / "detect.txt"
        if lock.is_file():
            return [_lock_step("install the requirements", lock, None)]
        count = len(_requirement_lines(requirements))
        return [PipStep("install the requirements", ("-r", str(requirements)), None, False,
                        False, count)]  # fmt: skip
    torch_lock = folder / ("torch-cpu.txt" if variant == "cpu" else "torch.txt")
    index = cpu_index if variant == "cpu" else None
    if (folder / "engine.txt").is_file() and torch_lock.is_file():
        return [
            _lock_step("install PyTorch", torch_lock, index),
            _lock_step("install the requirements", folder / "engine.txt", None),
        ]
    steps = []
    if variant == "cpu":
        pins = _torch_pins(requirements)
        steps.append(PipStep("install PyTorch", pins, index, False, True, len(pins)))
    everything = len(_requirement_lines(requirements))
    steps.append(PipStep("install the requirements", ("-r", str(requirements)), None, False,
                         False, everything))  # fmt: skip
    return steps


@dataclass
class Installer:
    """Makes the engine environment under ``root`` from ``requirements`` (and its locks).

    ``log`` gets every line of output, ``progress`` percentages (0-100). ``pip_args`` go to
    every pip install (tests: a local package folder with ``--no-index --find-links``);
    ``check_code`` is run in the new environment; ``gpu`` False on Linux installs torch's
    CPU-only build (no CUDA libraries) from ``cpu_index``; ``check_torch`` checks that build.
    ``light``: the detection-only engine (``requirements`` are then
    :data:`DETECT_REQUIREMENTS`, no torch, checked with :data:`DETECT_CHECK_CODE`).
    """

    root: Path
    requirements: Path
    log: Callable[[str], None] = print
    progress: Callable[[float], None] = lambda percent: None
    pip_args: Sequence[str] = ()
    check_code: str = CHECK_CODE
    gpu: bool = True
    base: tuple[str, str] | None = None  # (tool, path); None: find_base_python()
    check_torch: bool = True
    cpu_index: str = TORCH_CPU_INDEX
    light: bool = False
    _cancel: threading.Event = field(default_factory=threading.Event)
    _process: subprocess.Popen[str] | None = None

    def __post_init__(self) -> None:
        if self.light:
            self.check_torch = False
            if self.check_code == CHECK_CODE:
                self.check_code = DETECT_CHECK_CODE

    @property
    def variant(self) -> str:
        """:data:`DETECT` for the detection-only engine; ``cpu`` when torch's CPU-only build
        is asked for on Linux; else ""."""
        if self.light:
            return DETECT
        return "cpu" if not self.gpu and sys.platform.startswith("linux") else ""

    def cancel(self) -> None:
        """Stop at once (the running step's process is killed); :meth:`install` cleans up."""
        self._cancel.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def install(self) -> str:
        """Run every step under the install lock; return the new engine interpreter.

        Raises:
            InstallError: a step failed (its name and why), or another installation runs;
                InstallCancelledError.
        """
        self._make_root("prepare the folder")
        lock = _lock(self.root, "wait for the other installation")
        try:
            return self._install()
        finally:
            lock.release()

    def _install(self) -> str:
        new = stamp(self.requirements, self.variant)
        _sweep(self.root)
        building = self.root / f"{BUILDING}{new}-{os.getpid()}"
        env: Path | None = None
        step = "find a Python"
        try:
            self.progress(1.0)
            tool, base = self.base or find_base_python()
            self.log(f"Making the environment with {tool}: {base}")
            step = "make the environment"
            if tool == "uv":
                self._run(step, [base, "venv", "--seed", str(building)], cwd=self.root)
            else:
                self._run(step, [base, "-I", "-m", "venv", str(building)], cwd=self.root)
            python = str(env_python(building))
            self.progress(8.0)
            self._install_packages(tool, base, python, building)
            step = "check the engine"
            self.progress(92.0)
            self._run(step, [python, "-I", "-m", "pip", "check", "--disable-pip-version-check"],
                      cwd=building)  # fmt: skip
            self._run(step, [python, "-I", "-c", self.check_code], cwd=building)
            if self.check_torch:
                self._check_torch(python, building)
            step = "make it the current engine"
            env = self._free_name(new)
            os.rename(building, env)
            python = self._check_moved(step, env)
            (env / COMPLETE).write_text(f"{new} {self.variant}\n", encoding="utf-8")
            self._set_current(env)
        except InstallError:
            self._drop(building, env)
            raise
        except OSError as err:
            self._drop(building, env)
            raise InstallError(step, f"{explain(str(err))} ({err})") from err
        remove_unused(self.root, env, self.log)
        self.progress(100.0)
        self.log(f"Engine installed: {python}")
        return python

    def _install_packages(self, tool: str, base: str, python: str, env: Path) -> None:
        """The pip steps of :func:`plan` for the new environment's platform."""
        tag = self._run("install the requirements", [python, "-I", "-c", TAG_CODE], cwd=env)[-1]
        steps = plan(self.requirements, tag.strip(), self.variant, self.cpu_index)
        on_line = self._count_progress(sum(s.count for s in steps))
        for pip_step in steps:
            if not pip_step.hashed:
                self.log(
                    f"'{pip_step.name}' runs without hash checks (no hashes for {tag} in"
                    f" {self.requirements.parent / LOCKS}): only the pinned versions hold"
                )
            cpu_torch = pip_step.index is not None and pip_step.index == self.cpu_index
            # A step with its own index takes nothing from pip's configured extra indexes or
            # local folders either: variables override pip's configuration files (a blank, not
            # an empty value, which pip skips, so that they name no index and no folder).
            alone = {"PIP_EXTRA_INDEX_URL": " ", "PIP_FIND_LINKS": " "} if pip_step.index else {}
            self._run(pip_step.name, self._pip(tool, base, python, pip_step), on_line,
                      cwd=env, index=pip_step.index, cpu_torch=cpu_torch, extra=alone)  # fmt: skip

    def _check_torch(self, python: str, env: Path) -> None:
        """The torch build must be the one asked for: CPU-only for ``cpu``, else CUDA on Linux."""
        step = "check the PyTorch build"
        lines = self._run(step, [python, "-I", "-c", TORCH_BUILD_CODE], cwd=env)
        found = [line.split() for line in lines if line.startswith("torch-build ")]
        version, cuda = (found[-1][1], found[-1][2]) if found and len(found[-1]) > 2 else ("?", "?")
        if self.variant == "cpu" and cuda != "None":
            raise InstallError(step, f"torch {version} is a CUDA build (CUDA {cuda}), not the"
                               " CPU-only build asked for; nothing was kept. Retry, or tick 'CUDA"
                               " build of PyTorch' to install it on purpose")  # fmt: skip
        if self.variant == "" and sys.platform.startswith("linux") and cuda == "None":
            raise InstallError(step, f"torch {version} is the CPU-only build, not the CUDA build"
                               " asked for; nothing was kept. Retry, or untick 'CUDA build of"
                               " PyTorch'")  # fmt: skip

    def _check_moved(self, step: str, env: Path) -> str:
        """The environment's interpreter, checked to run from its final folder."""
        python = str(env_python(env))
        lines = self._run(step, [python, "-I", "-c", "import sys; print(sys.prefix)"], cwd=env)
        if not lines or not os.path.samefile(lines[-1].strip(), env):
            raise InstallError(step, f"the environment does not work from {env} (see the log)")
        return python

    def _free_name(self, new: str) -> Path:
        """``engine-<stamp>``, or ``engine-<stamp>-2``... when that one exists (in use)."""
        env, n = self.root / f"engine-{new}", 1
        while env.exists():
            n += 1
            env = self.root / f"engine-{new}-{n}"
        return env

    def _drop(self, building: Path, env: Path | None) -> None:
        """Remove a half-made environment (never the current one)."""
        shutil.rmtree(building, ignore_errors=True)
        if env is not None and current_env(self.root) != env:
            shutil.rmtree(env, ignore_errors=True)

    def _make_root(self, step: str) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{os.getpid()}"
            probe.write_text("", encoding="utf-8")
            probe.unlink()
        except OSError as err:
            raise InstallError(
                step, f"the folder {self.root} cannot be written ({err.strerror or err})"
            ) from err

    def _pip(self, tool: str, base: str, python: str, step: PipStep) -> list[str]:
        args = ["--no-deps"] if step.complete else []
        if step.hashed:
            args.append("--require-hashes")
        args += ["--only-binary", ":all:", *step.args]
        if step.index:
            args += ["--index-url", step.index]
        args += self.pip_args
        if tool == "uv":
            return [base, "pip", "install", "--python", python, *args]
        return [python, "-I", "-m", "pip", "install", "--disable-pip-version-check",
                *FAIL_FAST, *args]  # fmt: skip

    def _count_progress(self, wanted: int) -> Callable[[str], None]:
        """Progress from pip's lines over every step: each package collected, 8-90%."""
        seen, top = [0], [8.0]

        def on_line(line: str) -> None:
            lower = line.lower()
            if lower.startswith("collecting"):
                seen[0] += 1
            elif not lower.startswith(("downloading", "using cached", "installing collected")):
                return
            top[0] = max(top[0], 8.0 + 82.0 * min(1.0, seen[0] / max(1, wanted)))
            self.progress(top[0])

        return on_line

    def _set_current(self, env: Path) -> None:
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.write_text(env.name + "\n", encoding="utf-8")
        os.replace(tmp, self.root / CURRENT)

    def _run(
        self,
        step: str,
        command: list[str],
        on_line: Callable[[str], None] | None = None,
        cwd: Path | None = None,
        index: str | None = None,
        cpu_torch: bool = False,
        extra: dict[str, str] | None = None,
    ) -> list[str]:
        """Run one step's command in ``cwd``, isolated from QGIS's Python variables, its output
        to the log; return its lines. Raise InstallError on failure (``index``, ``cpu_torch``:
        the step's package index, named when it cannot be reached; ``extra``: environment
        variables)."""
        if self._cancel.is_set():
            raise InstallCancelledError(step)
        self.log("$ " + " ".join(command))
        lines: list[str] = []
        env = child_environment(PIP_NO_INPUT="1", PYTHONUNBUFFERED="1", **UV_FAIL_FAST)
        env.update(extra or {})
        try:
            self._process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                cwd=str(cwd or self.root),
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
            raise InstallError(step, explain("\n".join(lines[-200:]), index, cpu_torch))
        return lines
