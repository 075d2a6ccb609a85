"""The exported model file: the network as ONNX, its spec in the file's metadata.

:func:`export_onnx` (needs torch and the ``onnx`` package: the full engine) writes the network
in eval mode with its batch norms folded (:func:`engine.models.fold.fold_batch_norms`; for a
model whose weights are all exact in float16, as the starter model's, they are stored as
float16 with a cast and the batch norms left to ONNX Runtime, which folds them when the
session opens: half the file, the same probabilities), input
``image`` (N, C, H, W) float32 normalised as the spec says, output ``logits`` (N, K, H, W),
batch, height and width dynamic (H and W multiples of the output stride). The metadata holds
:data:`META_FORMAT` = :data:`FORMAT`, :data:`META_VERSION`, :data:`META_SPEC` (the spec's JSON,
:mod:`engine.models.spec`), :data:`META_STRIDE` and :data:`META_SOURCE` (the hash of the
``.pt`` file it was exported from). Before the file is written, ONNX Runtime's
probabilities on a probe are checked against torch's (at most :data:`TOLERANCE` apart).

:func:`read_onnx` (ONNX Runtime only, no torch) opens such a file and checks its metadata.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ModelFileError
from engine.geo.outputs import atomic_output
from engine.models.spec import ModelSpec, spec_from_json, spec_to_json

if TYPE_CHECKING:
    from torch import nn

FORMAT = "footprint-onnx"
FORMAT_VERSION = 1
META_FORMAT, META_VERSION = "footprint_format", "footprint_format_version"
META_SPEC, META_STRIDE = "footprint_spec", "footprint_stride"
#: The SHA-256 of the ``.pt`` file the export was made from (exports since 2026-12-06): an
#: ``.onnx`` beside a ``.pt`` is that model only while the hash matches.
META_SOURCE = "footprint_source_sha256"
#: ONNX operator set of the export.
OPSET = 17
#: Largest difference in probability allowed between ONNX Runtime and torch on the probe.
TOLERANCE = 1e-4
_HINT = "export it from a .pt model with `python -m engine export` (QGIS: Export model to ONNX)"


def _probe(spec: ModelSpec, stride: int) -> np.ndarray:
    """A fixed random input: not square, sides multiples of the stride, larger than a tile
    rounded to it (so dynamic sizes are exercised)."""
    side = max(stride, 32)
    height, width = 2 * side, 3 * side
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, spec.in_channels, height, width)).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32)


def export_onnx(
    model: nn.Module,
    spec: ModelSpec,
    stride: int,
    path: str | os.PathLike[str],
    overwrite: bool = False,
    source: str | None = None,
) -> float:
    """Write ``model`` (torch, with ``spec`` and output ``stride``) as ONNX to ``path``
    atomically; return the largest probability difference found on the probe. ``source``:
    the SHA-256 of the ``.pt`` file the model was read from (:func:`file_sha256`).

    Raises:
        OutputError: the file exists and ``overwrite`` is False, or it cannot be written.
        ModelFileError: the network does not export, or ONNX Runtime's probabilities differ
            from torch's by more than :data:`TOLERANCE` (nothing is written then).
    """
    import onnx
    import torch

    from engine.models.fold import fold_batch_norms

    net = model.eval().to("cpu")
    half = _half_exact(net)
    if not half:  # weights saved in half precision stay unfolded: see the doc
        net = fold_batch_norms(net, spec.in_channels)
    net = net.to(memory_format=torch.contiguous_format)
    probe = _probe(spec, stride)
    with torch.inference_mode():
        expected = torch.sigmoid(net(torch.from_numpy(probe)).float()).numpy()
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_output(path, overwrite) as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
                torch.onnx.export(
                    net,
                    (torch.from_numpy(probe),),
                    str(tmp),
                    input_names=["image"],
                    output_names=["logits"],
                    dynamic_axes={"image": axes, "logits": axes},
                    opset_version=OPSET,
                    do_constant_folding=not half,  # keep half-exact weights as they are
                    dynamo=False,
                )
        except Exception as err:  # torch raises many kinds for an unexportable network
            raise ModelFileError(
                f"The {spec.architecture}/{spec.encoder} network cannot be exported to ONNX"
                f" ({str(err).splitlines()[0] if str(err) else type(err).__name__}); keep"
                " using the .pt model with torch."
            ) from err
        proto = onnx.load(str(tmp))
        meta = {
            META_FORMAT: FORMAT,
            META_VERSION: str(FORMAT_VERSION),
            META_SPEC: spec_to_json(spec),
            META_STRIDE: str(stride),
            **({META_SOURCE: source} if source else {}),
        }
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        _half_where_exact(proto)
        proto.producer_name = "footprint"
        onnx.save(proto, str(tmp))
        session, _, _ = read_onnx(tmp)
        got = _sigmoid(session.run(None, {"image": probe})[0].astype(np.float32))
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf
        if not diff <= TOLERANCE:
            raise ModelFileError(
                f"ONNX Runtime's probabilities differ from torch's by {diff:.2g} on a probe"
                f" (at most {TOLERANCE:g} allowed): the export is not faithful for this"
                f" {spec.architecture}/{spec.encoder} network; keep using the .pt model."
            )
    return diff


def _half_exact(model: nn.Module) -> bool:
    """True when float16 holds every weight of ``model`` exactly (a model saved in half
    precision, as the starter model)."""
    import torch

    return all(
        torch.equal(t.detach().half().float(), t.detach().float())
        for t in [*model.parameters(), *model.buffers()]
        if t.is_floating_point()
    )


def _half_where_exact(proto: Any) -> None:
    """Store the float32 weights of ``proto`` as float16 with a cast back, where float16
    holds them exactly (weights saved in half precision, as the starter model's): half the
    file, the same network (ONNX Runtime folds the casts when the session opens)."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    weights = [w for w in graph.initializer if w.data_type == onnx.TensorProto.FLOAT]
    arrays = [numpy_helper.to_array(w) for w in weights]
    exact = all(np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in arrays)
    if not weights or not exact:
        return
    casts = []
    for weight, array in zip(weights, arrays, strict=True):
        half = numpy_helper.from_array(array.astype(np.float16), weight.name + "_fp16")
        weight.CopyFrom(half)
        casts.append(
            onnx.helper.make_node(
                "Cast", [half.name], [half.name[: -len("_fp16")]], to=onnx.TensorProto.FLOAT
            )
        )
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def session_options(threads: int | None = None, optimize: bool = True) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads (default: ONNX Runtime's),
    one caller thread each, all graph optimisations unless ``optimize`` is False."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    options.log_severity_level = 3  # errors only
    return options


def read_onnx(
    path: str | os.PathLike[str], threads: int | None = None, optimize: bool = True
) -> tuple[Any, ModelSpec, int]:
    """An ONNX Runtime session (CPU) of the exported model ``path``, its spec and its output
    stride.

    Raises:
        ModelFileError: missing, not ONNX, or an ONNX model without Footprint's metadata;
            ONNX Runtime not installed.
    """
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ModelFileError(
            f"Reading the ONNX model {path} needs ONNX Runtime, which is not installed:"
            " install the engine again (QGIS: Plugins > Footprint > Install engine), or"
            " `pip install onnxruntime`; or give a .pt model."
        ) from err

    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a folder" if file.is_dir() else "does not exist"
        raise ModelFileError(f"Model file {file} {what}; give an .onnx file or {_HINT}.")
    try:
        session = ort.InferenceSession(
            str(file), session_options(threads, optimize), providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # ONNX Runtime raises its own kinds for a damaged file
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ModelFileError(
            f"{file} is not an ONNX model ONNX Runtime can read ({reason}); if it was"
            f" exported by Footprint it is damaged: {_HINT} again."
        ) from err
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(META_FORMAT) != FORMAT or META_SPEC not in meta:
        raise ModelFileError(
            f"{file} is an ONNX model but not a Footprint model (its metadata has no"
            f" {META_FORMAT}={FORMAT} and {META_SPEC}): Footprint needs the model's bands,"
            f" normalisation, resolution and threshold; {_HINT}."
        )
    version = meta.get(META_VERSION, "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"{file} has exported-model format version {version!r}, newer than this engine"
            f" reads ({FORMAT_VERSION}); update Footprint to use it."
        )
    spec = spec_from_json(meta[META_SPEC], str(file))
    stride = meta.get(META_STRIDE, "1")
    if not stride.isdigit() or not 1 <= int(stride) <= 1024:
        raise ModelFileError(f"{file} has an invalid output stride {stride!r}; {_HINT}.")
    return session, spec, int(stride)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, hex (a 10 MB model: ~20 ms)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def exported_from(session: Any) -> str | None:
    """The SHA-256 of the ``.pt`` file an open export was made from (None: an export made
    before it was recorded)."""
    value = session.get_modelmeta().custom_metadata_map.get(META_SOURCE)
    return str(value) if value else None


def read_onnx_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The spec of the exported model ``path`` (see :func:`read_onnx`)."""
    return read_onnx(path, threads=1, optimize=False)[1]
