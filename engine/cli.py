"""Command-line interface: ``python -m engine <command> [options]``.

Options are generated from the frozen configs in :mod:`engine.config`, so the CLI, the plugin
and the engine share one contract. ``--events json`` prints one JSON object per line
(progress, log, metric, result, error) for the QGIS plugin. Exit codes: 0 success, 1 error
(message on stderr), 130 interrupted (SIGINT/SIGTERM; nothing half-written is left behind).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine import __version__
from engine.config import (
    DetectConfig,
    EvaluateConfig,
    ExportConfig,
    ImproveConfig,
    ModelInfoConfig,
    PredictConfig,
    RasterizeConfig,
    TrainConfig,
    VectorizeConfig,
    option_flag,
)
from engine.errorlog import log_traceback, quiet_unraisable
from engine.errors import CancelledError, ConfigError, FootprintError
from engine.events import CANCEL, JsonEvents, NullProgress, Progress, TerminalProgress
from engine.geo.temporary import remove_scratch

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130
#: What a command returns (one of :mod:`engine.results`).
Result = Mapping[str, object]
#: Packages of the full engine that the detection-only engine lacks.
TRAINING_PACKAGES = ("torch", "torchvision", "segmentation_models_pytorch", "timm", "onnx")

DESCRIPTIONS = {
    "rasterize-labels": "Burn building polygons into a mask GeoTIFF on a raster's exact grid.",
    "train": "Train a U-Net (or another smp model) on rasters and building polygons.",
    "improve": "Improve a model with corrected buildings inside the area checked (fine-tune).",
    "predict": "Predict a building-probability GeoTIFF with a trained model.",
    "vectorize": "Turn a probability or mask raster into building polygons.",
    "detect": "Predict and vectorize in one pass: raster + model -> building polygons.",
    "evaluate": "Score predicted building polygons against reference polygons.",
    "model-info": "Print a model file's spec (resolution, bands, tile size...) as JSON.",
    "export": "Export a model to ONNX, for detection with ONNX Runtime (no torch needed).",
}


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field[Any], dest: str) -> None:
    """Add one option for a config field, its kind taken from the annotation text."""
    kind = str(f.type).replace(" ", "")
    flag = option_flag(f.name)
    help_text = str(f.metadata.get("help", ""))
    given = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    required = not given and not kind.endswith("|None")  # None: the engine decides
    default = None if required else (f.default if f.default is not dataclasses.MISSING else None)
    kw: dict[str, Any] = {"dest": dest, "help": help_text, "default": default}
    if kind != "bool" and not kind.startswith("tuple[float,float,float,float]"):
        kw["metavar"] = f.name.rstrip("s").upper() if kind.startswith("tuple[") else f.name.upper()
    if kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    elif kind.startswith("tuple[float,float,float,float]"):
        kw.update(nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    elif kind.startswith("tuple[int,"):
        kw.update(nargs="+", type=int, default=default or ())
    elif kind.startswith("tuple[str,"):
        kw.update(nargs="+", action="extend", default=None, required=required)
    else:
        base = kind.split("|")[0]
        kw["type"] = {"int": int, "float": float}.get(base, str)
        kw["required"] = required
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
    if help_text and not required and kind != "bool" and default not in (None, ()):
        kw["help"] = f"{help_text} Default: {default}."
    flags = [flag]
    if kind.startswith("tuple[str,") and flag.endswith("s"):
        flags.insert(0, flag[:-1])  # --raster A --raster B as well as --rasters A B
    parser.add_argument(*flags, **kw)


def _add_config(parser: argparse.ArgumentParser, cls: type, prefix: str) -> None:
    """One option per field of ``cls``: its own first, then those of each option group it
    takes (e.g. ``InferenceOptions``) under the group's title."""
    groups: dict[type, list[dataclasses.Field[Any]]] = {}
    for f in dataclasses.fields(cls):
        groups.setdefault(_declared_in(cls, f.name), []).append(f)
    for owner, fields in sorted(groups.items(), key=lambda item: item[0] is not cls):
        target: Any = parser
        if owner is not cls:
            title = (owner.__doc__ or owner.__name__).split("\n")[0].rstrip(".")
            target = parser.add_argument_group(title[0].lower() + title[1:])
        for f in fields:
            _add_field(target, f, prefix + f.name)


def _declared_in(cls: type, name: str) -> type:
    """The class of ``cls``'s hierarchy whose own body declares the field ``name``."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def _build(cls: type, args: argparse.Namespace, prefix: str, **override: Any) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in override:
            values[f.name] = override[f.name]
            continue
        value = getattr(args, prefix + f.name, None)
        if isinstance(value, list):
            value = tuple(value)
        if value is None and f.default is not dataclasses.MISSING and f.default is not None:
            value = f.default
        values[f.name] = value
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class Command:
    """A command: its config (options) and the engine function that runs it, imported only
    when the command runs (so ``--help`` does not load torch)."""

    config: type
    module: str
    function: str

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """One option per config field."""
        _add_config(parser, self.config, "c_")

    def run(self, args: argparse.Namespace, progress: Progress) -> Result:
        """Build the config from ``args`` and run the command."""
        try:
            run: Callable[[Any, Progress], Result] = getattr(
                importlib.import_module(self.module), self.function
            )
            return run(_build(self.config, args, "c_"), progress)
        except ModuleNotFoundError as err:
            if err.name not in TRAINING_PACKAGES:
                raise
            raise ConfigError(
                f"This command needs {err.name}, which the detection-only engine does not have:"
                " install the full engine (QGIS: Plugins > Footprint > Settings > Install"
                " engine > Full; or bash scripts/setup.sh). Detection runs without it on an"
                " .onnx model (export)."
            ) from err


COMMANDS: dict[str, Command] = {
    "rasterize-labels": Command(RasterizeConfig, "engine.rasterize", "rasterize_labels"),
    "train": Command(TrainConfig, "engine.train", "train"),
    "improve": Command(ImproveConfig, "engine.improve", "improve"),
    "predict": Command(PredictConfig, "engine.predict", "predict"),
    "vectorize": Command(VectorizeConfig, "engine.vectorize", "vectorize"),
    "detect": Command(DetectConfig, "engine.detect", "detect"),
    "evaluate": Command(EvaluateConfig, "engine.evaluate", "evaluate"),
    "model-info": Command(ModelInfoConfig, "engine.modelinfo", "model_info"),
    "export": Command(ExportConfig, "engine.export", "export"),
}


class _ListModels(argparse.Action):
    """``train --list-models``: print architectures and encoders, then exit."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        from engine.models.registry import list_models

        print(json.dumps(list_models(), indent=2, default=str))
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per engine command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--events",
        choices=("terminal", "json", "quiet"),
        default="terminal",
        help="How to report progress: a bar on a terminal, JSON lines, or nothing.",
    )
    summary = __doc__.split("\n")[0].replace("``", "")  # no reST quotes in a terminal
    parser = argparse.ArgumentParser(prog="python -m engine", description=summary)
    parser.add_argument("--version", action="version", version=f"footprint-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name, parents=[common], help=DESCRIPTIONS[name], description=DESCRIPTIONS[name]
        )
        command.add_options(p)
        if name == "train":
            p.add_argument(
                "--list-models",
                nargs=0,
                action=_ListModels,
                help="List architectures and encoders, then exit.",
            )
    return parser


def _on_signal(signum: int, _frame: types.FrameType | None) -> None:
    """Stop at once: the exception unwinds through atomic outputs, which clean up."""
    CANCEL.set()
    raise CancelledError(
        f"Interrupted by signal {signal.Signals(signum).name}; no output was written."
    )


def _progress_for(mode: str) -> Progress:
    if mode == "json":
        return JsonEvents()
    if mode == "quiet":
        return NullProgress()
    return TerminalProgress()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    args = build_parser().parse_args(argv)
    progress = _progress_for(args.events)
    # the engine says itself what a raster without georeference means for each command
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    if args.command in ("train", "predict", "detect"):
        from engine.heap import tune_allocator

        tune_allocator()
    if args.command == "train":  # predict and detect: when they open torch (engine.inference)
        from engine.models.device import fit_threads_to_cpu

        threads = fit_threads_to_cpu()
        if threads is not None:
            progress.log(f"Using {threads} torch thread(s): the CPUs this process may use.")
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with quiet_unraisable():
            result = COMMANDS[args.command].run(args, progress)
    except CancelledError as exc:
        _report_error(progress, exc)
        return EXIT_INTERRUPTED
    except FootprintError as exc:
        _report_error(progress, exc)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - last resort: report, never a bare traceback
        log = log_traceback(exc, " ".join(["python -m engine", *(argv or sys.argv[1:])]))
        text = str(exc).strip().rstrip(".") or type(exc).__name__
        where = (
            f"The full traceback is in {log}; please attach it."
            if log is not None
            else "Its traceback could not be written to a log file (no writable private folder)."
        )
        _report_error(
            progress,
            RuntimeError(f"{text}. {where}"),
            prefix="Internal error (please report it): ",
        )
        return EXIT_ERROR
    finally:
        remove_scratch()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if isinstance(progress, JsonEvents):
        progress.emit("result", result=result)
    elif args.events == "terminal":
        progress.set_progress(100)
        print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def _report_error(progress: Progress, exc: BaseException, prefix: str = "") -> None:
    message = f"{prefix}{exc}"
    if isinstance(progress, JsonEvents):
        kind = "InternalError" if prefix else type(exc).__name__
        progress.emit("error", type=kind, message=message)
    print(f"Error: {message}", file=sys.stderr)
