"""``export``: a model file as ONNX (:mod:`engine.models.onnxfile`), for detection on ONNX
Runtime without torch (the detection-only engine)."""

from __future__ import annotations

from pathlib import Path

from engine.config import ExportConfig
from engine.errors import ConfigError
from engine.events import Progress
from engine.geo.outputs import check_output, file_input, prepare_outputs
from engine.models.modelfile import load_model
from engine.models.onnxfile import TOLERANCE, export_onnx, file_sha256
from engine.models.registry import output_stride
from engine.models.starter import resolve_model
from engine.results import ExportResult


def export(config: ExportConfig, progress: Progress) -> ExportResult:
    """Write ``config.model`` (default: the starter model) as ONNX to ``config.output``.

    Raises:
        ConfigError: the output is not an .onnx file, or the model is already ONNX.
        ModelFileError: unreadable model, or an export that is not faithful (nothing written).
        OutputError: the output exists (without overwrite) or cannot be written.
    """
    if Path(config.output).suffix.lower() != ".onnx":
        raise ConfigError(
            f"Output {config.output} must end in .onnx (the file ONNX Runtime and Footprint"
            " recognise), e.g. model.onnx."
        )
    path = resolve_model(config.model, progress)
    if Path(path).suffix.lower() == ".onnx":
        raise ConfigError(f"{path} is already an ONNX model; give the .pt file train wrote.")
    out = check_output(config.output, config.overwrite)
    prepare_outputs({"output": out}, file_input("model file", path))
    model, spec = load_model(path)
    progress.log(f"Exporting {path} ({spec.architecture}/{spec.encoder}) to ONNX...")
    source = file_sha256(path)
    diff = export_onnx(model, spec, output_stride(model), out, config.overwrite, source)
    size = out.stat().st_size / 1e6
    progress.log(
        f"Wrote {out} ({size:.1f} MB): ONNX Runtime's probabilities are within {diff:.1g} of"
        f" torch's on a probe (at most {TOLERANCE:g} allowed). Detect with --model {out}."
    )
    progress.set_progress(100.0)
    return {
        "output": str(out),
        "model": str(Path(path).absolute()),
        "max_difference": diff,
        "megabytes": round(size, 2),
    }
