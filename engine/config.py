"""Frozen configurations of every engine command: the one contract between CLI, plugin and
engine, and the single source of defaults, choices and help texts.

Each field's metadata holds what a user interface needs: ``help`` (the CLI's help and the
Processing parameter's tooltip), and for fields the Processing dialogs show, ``label``,
``minimum``/``maximum`` and ``choices``. The CLI option of a field is :func:`option_flag` of its
name; the plugin builds its parameters from the same fields (``plugin/algorithms/options.py``).
Standard library only: the plugin imports this module inside QGIS.

Paths are plain strings. Tuples hold repeated values. ``None`` means "decide from the data"
(for a model: the starter model); a field that takes None and has no default must be given in
Python, and is optional on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Every architecture ``train`` builds: segmentation-models-pytorch's (a test keeps this list
#: equal to smp's) and ``compact``, a small U-Net of our own.
ARCHITECTURES = (
    "unet",
    "unetplusplus",
    "manet",
    "linknet",
    "fpn",
    "pspnet",
    "deeplabv3",
    "deeplabv3plus",
    "pan",
    "upernet",
    "segformer",
    "dpt",
    "compact",
)


def _h(
    text: str,
    label: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
) -> dict[str, object]:
    """Field metadata: help text, and what a dialog shows (label, range, choices)."""
    return {
        "help": text,
        "label": label,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
    }


#: The name ``--model`` and ``--init-model`` take for the starter model, the model that comes
#: with Footprint (``engine/models/starter.py``).
STARTER = "starter"
#: Help of predict's and detect's model: optional, the starter model by default.
MODEL_HELP = (
    "Model file written by train (.pt), or exported by export (.onnx: runs on ONNX Runtime)"
    " (default: the starter model that comes with Footprint, for RGB drone or aerial imagery"
    " of about 5-30 cm pixels)."
)


def option_flag(name: str) -> str:
    """The command-line option of the field ``name``: ``min_area_m2`` -> ``--min-area-m2``."""
    return "--" + name.replace("_", "-")


#: What runs a model at predict and detect (``engine.inference.network``).
RUNTIMES = ("auto", "torch", "onnx")
#: The arithmetic a model runs in on a CPU (``engine.inference.precision``).
PRECISIONS = ("auto", "fp32", "bf16")


#: Touching buildings: the seed settings where neither the model file nor the user gives them
#: (vectorize on a probability raster, models trained before the settings were chosen).
SEED_THRESHOLD = 0.9
SEED_EROSION_M = 0.6
MIN_SEED_M2 = 1.0
#: Smallest building kept (m²) where neither the model file nor the user gives it (vectorize on
#: a probability raster, models trained before train chose it on validation).
MIN_AREA_M2 = 4.0


@dataclass(frozen=True)
class RasterizeConfig:
    """Burn building polygons into a mask GeoTIFF on a raster's exact grid."""

    raster: str = field(metadata=_h("Raster whose grid the mask follows (file, folder or glob)."))
    labels: tuple[str, ...] = field(metadata=_h("Building polygon layer(s), any CRS."))
    output: str = field(metadata=_h("Mask GeoTIFF to write (1 building, 0 background)."))
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))
    all_touched: bool = field(
        default=False,
        metadata=_h(
            "Burn every pixel a polygon touches, not only centres.", "Burn every touched pixel"
        ),
    )
    separation: bool = field(
        default=False,
        metadata=_h(
            "Also burn the separation strip between touching buildings (about a pixel each"
            " side of a shared wall) as class 2.",
            "Separation strip between touching buildings (2)",
        ),
    )
    window_size: int = field(default=1024, metadata=_h("Pixels per processing window side."))


@dataclass(frozen=True)
class TrainConfig:
    """Train a segmentation model on rasters and building labels."""

    rasters: tuple[str, ...] = field(metadata=_h("Training raster(s): files, folders or globs."))
    labels: tuple[str, ...] = field(metadata=_h("Building polygon layer(s), any CRS."))
    output: str = field(metadata=_h("Model file to write (.pt)."))
    report_dir: str | None = field(
        default=None, metadata=_h("Folder for the training report (default: <output>_report).")
    )
    validation: str | None = field(
        default=None, metadata=_h("Polygons marking validation areas (else a fraction is used).")
    )
    labelled_area: str | None = field(
        default=None,
        metadata=_h(
            "Polygons marking where the labels are complete: outside them pixels are ignored by"
            " the loss and the scores instead of being taught as no building (default: the"
            " labels are complete over the whole rasters)."
        ),
    )
    val_fraction: float = field(
        default=0.2,
        metadata=_h(
            "Share of the area held out for validation, as blocks (0: none; the training"
            " windows then choose the best epoch and threshold).",
            "Validation fraction",
            0.0,
            0.9,
        ),
    )
    bands: tuple[int, ...] = field(
        default=(), metadata=_h("1-based bands to use (default: all but alpha).")
    )
    architecture: str = field(
        default="unet",
        metadata=_h(
            "Model architecture (see --list-models).", "Architecture", choices=ARCHITECTURES
        ),
    )
    encoder: str = field(
        default="tu-tf_efficientnet_lite0",
        metadata=_h("Encoder name (any smp encoder).", "Encoder"),
    )
    encoder_weights: str | None = field(
        default=None,
        metadata=_h(
            "Pretrained encoder weights: imagenet (packaged ImageNet weights, no download:"
            " encoders tu-tf_efficientnet_lite0/1/2), none (random weights), or a local"
            " weights file (default: imagenet where the encoder has packaged weights, else"
            " none)."
        ),
    )
    decoder_attention: bool = field(
        default=False, metadata=_h("scSE attention in the decoder.", "Decoder attention (scSE)")
    )
    decoder_channels: tuple[int, ...] = field(
        default=(),
        metadata=_h(
            "Channels of the U-Net decoder's blocks, deepest first, one per encoder stage"
            " (default: the architecture's, 256 128 64 32 16 for unet). Narrower decoders"
            " train and detect faster."
        ),
    )
    tile_size: int = field(
        default=256, metadata=_h("Training window size in pixels.", "Tile size (pixels)", 32, 4096)
    )
    stride: int | None = field(default=None, metadata=_h("Window stride (default: half a tile)."))
    max_nodata_fraction: float = field(
        default=0.5, metadata=_h("Drop windows with more nodata than this share.")
    )
    empty_keep_fraction: float = field(
        default=0.3,
        metadata=_h(
            "Share of windows without buildings to keep (0-1).",
            "Share of windows without buildings kept",
            0.0,
            1.0,
        ),
    )
    augment: bool = field(
        default=True,
        metadata=_h(
            "Random flips/rotations and colour jitter.", "Augment (flips, rotations, colour jitter)"
        ),
    )
    scale_jitter: float = field(
        default=1.0,
        metadata=_h(
            "Rescale each training window by a random factor from 1/F to F (1: off; needs"
            " augment), so that one model serves imagery finer or coarser than it was trained"
            " at.",
            "Scale jitter (1: off)",
            1.0,
            4.0,
        ),
    )
    colour_jitter: float = field(
        default=0.0,
        metadata=_h(
            "Also vary each training window's colour by up to this much (0: off; needs"
            " augment): saturation by up to twice it, each band's gain and shift by up to it,"
            " so that one model serves other cameras and light.",
            "Colour jitter per band (0: off)",
            0.0,
            0.5,
        ),
    )
    balance: float = field(
        default=0.0,
        metadata=_h(
            "Balance the places (one per training raster) in each epoch's draws: 0 draws them"
            " by their windows, 1 in equal shares, between: shares in proportion to windows to"
            " the power 1 - balance.",
            "Balance places (0: by windows, 1: equal shares)",
            0.0,
            1.0,
        ),
    )
    loss: str = field(
        default="bce+dice",
        metadata=_h("Loss: bce, dice, jaccard, focal or sums like bce+dice.", "Loss"),
    )
    pos_weight: float = field(
        default=1.0,
        metadata=_h("Weight of the building class in BCE.", "Building weight (BCE)", 0.0, 1000.0),
    )
    optimizer: str = field(default="adamw", metadata=_h("adamw or sgd (with momentum 0.9)."))
    lr: float = field(default=1e-3, metadata=_h("Peak learning rate.", "Learning rate", 0.0, 10.0))
    weight_decay: float = field(default=1e-4, metadata=_h("Weight decay."))
    schedule: str = field(
        default="onecycle", metadata=_h("Learning-rate schedule: onecycle, cosine or constant.")
    )
    epochs: int = field(default=8, metadata=_h("Number of epochs.", "Epochs", 1, 10000))
    ema_decay: float = field(
        default=0.0,
        metadata=_h(
            "Average the weights as training goes (exponential moving average, this decay per"
            " batch: 0.99 weighs about the last 100 batches); validation and the written model"
            " use the average. 0: off.",
            "Weight averaging (EMA decay per batch, 0: off)",
            0.0,
            0.9999,
        ),
    )
    batch_size: int = field(default=8, metadata=_h("Windows per batch.", "Batch size", 1, 1024))
    patience: int = field(
        default=0,
        metadata=_h(
            "Stop after this many epochs without better validation IoU (0: never).",
            "Patience (epochs, 0: never stop early)",
            0,
            10000,
        ),
    )
    seed: int = field(
        default=0,
        metadata=_h("Random seed (runs on CPU are repeatable).", "Random seed", 0, 2**31 - 1),
    )
    device: str = field(default="auto", metadata=_h("auto, cpu, cuda or cuda:N."))
    workers: int = field(default=0, metadata=_h("DataLoader worker processes."))
    amp: bool = field(default=True, metadata=_h("Mixed precision on CUDA."))
    cpu_bf16: bool = field(
        default=True,
        metadata=_h(
            "On a CPU with a bf16 path (AMX or AVX512-BF16: recent Xeons, AMD EPYC from Zen 4),"
            " train under bf16 autocast: 1.2-1.4x faster with the same scores (docs/"
            "BENCHMARKS.md, Runtimes and precision). Other CPUs train in fp32 either way.",
            "bf16 autocast on a CPU that has a bf16 path",
        ),
    )
    separation: bool = field(
        default=True,
        metadata=_h(
            "Learn a separation class where buildings touch (both sides of a shared wall), so"
            " that detect gives one polygon per building.",
            "Separation class between touching buildings",
        ),
    )
    separation_weight: float = field(
        default=3.0,
        metadata=_h(
            "Loss weight of the separation class against the building class (> 1 learns the"
            " strips between touching buildings harder).",
            "Separation loss weight",
            0.01,
            100.0,
        ),
    )
    separation_width_m: float = field(
        default=0.4,
        metadata=_h(
            "Separation strip width on each side of a shared wall, in metres on the ground"
            " (at least one pixel).",
            "Separation strip width (metres each side of a shared wall)",
            0.01,
            5.0,
        ),
    )
    init_model: str | None = field(
        default=None,
        metadata=_h(
            "Start from all weights of this Footprint model file (fine-tuning): its"
            " architecture, encoder, classes, bands and normalisation are kept; starter: the"
            " starter model that comes with Footprint."
        ),
    )
    freeze_encoder_epochs: int = field(
        default=0,
        metadata=_h(
            "Train only the decoder for this many first epochs (0: never freeze).",
            "Freeze the encoder for the first epochs",
            0,
            10000,
        ),
    )
    keep_batch_norm: bool = field(
        default=False,
        metadata=_h(
            "Keep the batch-norm statistics of --init-model while fine-tuning (few windows"
            " would re-estimate them badly)."
        ),
    )
    max_minutes: float | None = field(
        default=None,
        metadata=_h(
            "Time budget in minutes: no epoch starts that would end after it (at least one"
            " epoch runs; default: no budget, all epochs).",
            "Time budget (minutes, empty: none)",
            0.0,
            100000.0,
        ),
    )
    resume: str | None = field(default=None, metadata=_h("Checkpoint to resume from."))
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))


@dataclass(frozen=True)
class ImproveConfig:
    """Improve a model with a mapper's corrected buildings inside the area they checked."""

    raster: str = field(
        metadata=_h("Imagery the buildings were corrected on (file, folder or glob).")
    )
    labels: str = field(
        metadata=_h(
            "Corrected building polygons (any CRS): every building inside the area checked;"
            " buildings outside it are used too, their surroundings unknown."
        )
    )
    checked_area: str = field(
        metadata=_h(
            "Polygons where the corrected buildings are complete: everything there that is not"
            " a building is taught as background; outside, the imagery is unknown."
        )
    )
    output: str = field(metadata=_h("Improved model file to write (.pt)."))
    model: str | None = field(
        default=None,
        metadata=_h("Model to start from (default: the starter model that comes with Footprint)."),
    )
    validation: str | None = field(
        default=None,
        metadata=_h(
            "Part of the area checked to hold back for the before/after scores (default:"
            " a share of the area checked, held_back)."
        ),
    )
    held_back: float = field(
        default=0.25,
        metadata=_h(
            "Share of the area checked held back for the before/after scores when no"
            " validation part is given (whole training windows, at least one).",
            "Share of the area checked held back for scoring",
            0.05,
            0.9,
        ),
    )
    minutes: float = field(
        default=15.0,
        metadata=_h(
            "Time budget in minutes: training stops before an epoch that would end after it"
            " (15 gave clearly better buildings than 5 with 50-100 corrected buildings).",
            "Time budget (minutes)",
            0.1,
            100000.0,
        ),
    )
    epochs: int | None = field(
        default=None,
        metadata=_h(
            "Train exactly this many epochs instead of for the time budget.",
            "Epochs (empty: as many as the time budget allows)",
            1,
            10000,
        ),
    )
    freeze_encoder_epochs: int = field(
        default=2,
        metadata=_h(
            "Train only the decoder for this many first epochs.",
            "Freeze the encoder for the first epochs",
            0,
            10000,
        ),
    )
    lr: float = field(
        default=1e-4,
        metadata=_h("Learning rate (constant).", "Learning rate", 0.0, 10.0),
    )
    empty_keep_fraction: float = field(
        default=1.0,
        metadata=_h(
            "Share of checked windows without buildings to keep (deleted false positives are"
            " taught there).",
            "Share of windows without buildings kept",
            0.0,
            1.0,
        ),
    )
    keep_batch_norm: bool = field(
        default=True, metadata=_h("Keep the starting model's batch-norm statistics (few windows).")
    )
    report_dir: str | None = field(
        default=None, metadata=_h("Folder for the report (default: <output>_report).")
    )
    seed: int = field(default=0, metadata=_h("Random seed.", "Random seed", 0, 2**31 - 1))
    device: str = field(default="auto", metadata=_h("auto, cpu, cuda or cuda:N."))
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))


@dataclass(frozen=True, kw_only=True)
class InferenceOptions:
    """How the model runs over a raster (predict and detect)."""

    batch_size: int | None = field(
        default=None,
        metadata=_h(
            "Windows per batch (default: what the device suits: one 512-px window on a CPU,"
            " as many 1024-px windows as fit half the free memory on a GPU).",
            "Batch size (windows)",
            1,
            1024,
        ),
    )
    window: int | None = field(
        default=None,
        metadata=_h(
            "Prediction window side in pixels, a multiple of the model's output stride"
            " (default: 512 on a CPU, 1024 on a GPU; any size works, the model need not have"
            " been trained on it).",
            "Prediction window (pixels)",
            8,
            100000,
        ),
    )
    margin: int | None = field(
        default=None,
        metadata=_h(
            "Overlap margin in pixels (default: an eighth of the model's training tile).",
            "Overlap margin (pixels)",
            0,
            100000,
        ),
    )
    tta: bool = field(
        default=False,
        metadata=_h(
            "8-way flip/rotation test-time augmentation.", "Test-time augmentation (8x slower)"
        ),
    )
    device: str = field(default="auto", metadata=_h("auto, cpu, cuda or cuda:N."))
    runtime: str = field(
        default="auto",
        metadata=_h(
            "What runs the model: torch, onnx (ONNX Runtime: a model exported with `export`,"
            " no torch needed) or auto (an .onnx model: ONNX Runtime; a .pt: the .onnx export"
            " of that very file beside it where torch would run fp32 on the CPU (no GPU; a"
            " CPU without a bf16 path, or fp32 asked) or torch is not installed, else torch).",
            "Runtime",
            choices=RUNTIMES,
        ),
    )
    precision: str = field(
        default="auto",
        metadata=_h(
            "Arithmetic of the model on a CPU: fp32, bf16 (torch only; fast on CPUs with AMX"
            " or AVX512-BF16) or auto (bf16 where the CPU has such a path, else fp32).",
            "Precision",
            choices=PRECISIONS,
        ),
    )
    native_resolution: bool = field(
        default=False,
        metadata=_h(
            "Predict at the raster's own resolution instead of the model's.",
            "Predict at the raster's resolution",
        ),
    )
    extent: tuple[float, float, float, float] | None = field(
        default=None,
        metadata=_h(
            "xmin ymin xmax ymax in the raster's CRS limiting the work: time, memory, disk and"
            " the probability raster cover its window of the raster's grid (rounded out to"
            " 512-px blocks), not the whole raster."
        ),
    )
    aoi: str | None = field(
        default=None,
        metadata=_h(
            "Polygon layer limiting the work (with --extent: their intersection); the"
            " probability raster covers its window of the raster's grid (rounded out to 512-px"
            " blocks), pixels outside the polygons being nodata."
        ),
    )
    dask_workers: int = field(
        default=0,
        metadata=_h(
            "Run on a local Dask cluster of this many worker processes, each with its share of"
            " the cores (0: in this process).",
            "Local workers (Dask)",
            0,
            256,
        ),
    )
    scheduler: str | None = field(
        default=None,
        metadata=_h(
            "Address of a running Dask scheduler to run on (tls://HOST:8786 with certificates,"
            " or tcp://127.0.0.1:8786 on this machine); its workers need this engine's"
            " environment and must see the raster and model paths.",
            "Dask scheduler address",
        ),
    )
    scheduler_insecure: bool = field(
        default=False,
        metadata=_h(
            "Allow a plain tcp:// scheduler address that is not this machine (loopback). Dask"
            " sends code and data as pickles without authentication: whoever runs that"
            " scheduler, or can reach its port, can run any program as you in this process"
            " and read your files. Use it only on a network you trust; prefer tls:// with"
            " certificates.",
            "Allow an unencrypted scheduler on another machine (it can run any code here)",
        ),
    )
    scheduler_ca: str | None = field(
        default=None,
        metadata=_h(
            "CA certificate (PEM) that signed the cluster's certificates, for a tls://"
            " scheduler address.",
            "Scheduler CA certificate (tls://)",
        ),
    )
    scheduler_cert: str | None = field(
        default=None,
        metadata=_h(
            "This client's certificate (PEM, signed by the cluster's CA), for a tls://"
            " scheduler address.",
            "Client certificate (tls://)",
        ),
    )
    scheduler_key: str | None = field(
        default=None,
        metadata=_h(
            "Private key of the client certificate (PEM; default: in the certificate file).",
            "Client private key (tls://)",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PolygonOptions:
    """How building probability becomes polygons (vectorize and detect)."""

    threshold: float | None = field(
        default=None,
        metadata=_h(
            "Pixels with building probability >= this are building (default: the threshold"
            " chosen on validation when the model was trained).",
            "Threshold (empty: the model's)",
            0.0,
            1.0,
        ),
    )
    min_area_m2: float | None = field(
        default=None,
        metadata=_h(
            "Buildings smaller than this (m²) join the neighbour they share the most edge with"
            " (models with a separation class), or are dropped when alone (default: the"
            f" model's, chosen on validation; {MIN_AREA_M2:g} in vectorize).",
            "Minimum building area (m², empty: the model's)",
            0.0,
        ),
    )
    hole_area_m2: float = field(
        default=4.0,
        metadata=_h("Fill holes smaller than this (m²).", "Fill holes smaller than (m²)", 0.0),
    )
    simplify: float = field(
        default=1.0,
        metadata=_h(
            "Simplification tolerance in pixels (0: off); neighbouring buildings are"
            " simplified together, so they keep sharing their edge.",
            "Simplify tolerance (pixels, 0: off)",
            0.0,
        ),
    )
    regularize: bool = field(
        default=False,
        metadata=_h(
            "Square off building outlines: right angles along each group of touching"
            " buildings' main directions, keeping L, T and U shapes and the walls neighbours"
            " share; round or irregular outlines stay as they are.",
            "Square off outlines",
        ),
    )
    low_confidence: float = field(
        default=0.75,
        metadata=_h(
            "Buildings whose score (mean building probability) is below this get"
            " low_confidence = 1 in the output, for a corrector to check first (0: none).",
            "Mark buildings scoring below this as low confidence",
            0.0,
            1.0,
        ),
    )
    seed_threshold: float | None = field(
        default=None,
        metadata=_h(
            "Touching buildings (models with a separation class): a building grows from each"
            " seed where building x (1 - separation) >= this (default: the model's, chosen on"
            f" validation; {SEED_THRESHOLD:g} in vectorize).",
            "Seed threshold (empty: the model's)",
            0.01,
            1.0,
        ),
    )
    seed_erosion_m: float | None = field(
        default=None,
        metadata=_h(
            "Erode seeds by this many metres first, so a short gap in the separation does not"
            f" join two buildings (default: the model's; {SEED_EROSION_M:g} in vectorize).",
            "Seed erosion (m, empty: the model's)",
            0.0,
            10.0,
        ),
    )
    min_seed_m2: float | None = field(
        default=None,
        metadata=_h(
            "Drop seeds smaller than this (m²): their pixels join a neighbour (default: the"
            f" model's; {MIN_SEED_M2:g} in vectorize).",
            "Smallest seed (m², empty: the model's)",
            0.0,
            1000.0,
        ),
    )

    @property
    def smallest_m2(self) -> float:
        """``min_area_m2``, or :data:`MIN_AREA_M2` where neither the user nor a model gave it."""
        return MIN_AREA_M2 if self.min_area_m2 is None else self.min_area_m2


@dataclass(frozen=True)
class PredictConfig(InferenceOptions):
    """Predict building probability over a raster with a trained model."""

    raster: str = field(metadata=_h("Raster to predict on (file, folder or glob)."))
    model: str | None = field(metadata=_h(MODEL_HELP))
    output: str = field(metadata=_h("Probability GeoTIFF to write (float32, 0-1)."))
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))


@dataclass(frozen=True)
class VectorizeConfig(PolygonOptions):
    """Turn a probability or mask raster into building polygons."""

    raster: str = field(metadata=_h("Probability or mask raster."))
    output: str = field(
        metadata=_h("Polygon file to write: .gpkg, .shp, .geojson, .fgb or .sqlite.")
    )
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))
    threshold: float = field(
        default=0.5,
        kw_only=True,
        metadata=_h("Pixels >= threshold are building (1 for a 0/1 mask).", "Threshold", 0.0, 1.0),
    )
    min_area_m2: float = field(
        default=MIN_AREA_M2,
        kw_only=True,
        metadata=_h(
            "Buildings smaller than this (m²) join the neighbour they share the most edge with"
            " (with a separation band), or are dropped when alone.",
            "Minimum building area (m²)",
            0.0,
        ),
    )
    band: int = field(default=1, metadata=_h("Band holding the probability."))
    separation_band: int | None = field(
        default=None,
        metadata=_h(
            "Band holding separation probability: buildings then grow from seeds, one polygon"
            " per building where they touch (default: the band named 'separation probability',"
            " as predict writes it; 0: none).",
            "Separation band (empty: found by name, 0: none)",
            0,
            10000,
        ),
    )
    window_size: int = field(default=2048, metadata=_h("Pixels per processing window side."))


@dataclass(frozen=True)
class DetectConfig(InferenceOptions, PolygonOptions):
    """Predict and vectorize in one pass: raster + model -> building polygons."""

    raster: str = field(metadata=_h("Raster to detect buildings in (file, folder or glob)."))
    model: str | None = field(metadata=_h(MODEL_HELP))
    output: str = field(
        metadata=_h("Building polygon file to write: .gpkg, .shp, .geojson, .fgb or .sqlite.")
    )
    overwrite: bool = field(default=False, metadata=_h("Replace the outputs if they exist."))
    keep_probability: str | None = field(
        default=None, metadata=_h("Also write the probability GeoTIFF to this path.")
    )


@dataclass(frozen=True)
class EvaluateConfig:
    """Score predicted polygons against reference polygons."""

    predicted: str = field(metadata=_h("Predicted building polygons."))
    reference: str = field(metadata=_h("Reference building polygons."))
    output: str | None = field(
        default=None,
        metadata=_h("Polygon file of matched (TP), false (FP) and missed (FN) buildings."),
    )
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))
    area: str | None = field(
        default=None,
        metadata=_h("Raster or polygon layer whose extent/area limits the evaluation."),
    )
    iou_threshold: float = field(
        default=0.5,
        metadata=_h("IoU for a one-to-one building match.", "IoU for a building match", 0.01, 1.0),
    )
    resolution: float | None = field(
        default=None,
        metadata=_h(
            "Pixel size for pixel scores (default: the area raster's, else 0.25 m).",
            "Pixel size for pixel scores",
            0.0,
        ),
    )
    max_shift_m: float = field(
        default=0.0,
        metadata=_h(
            "Reference traced on other imagery: move it by the shift of up to this many metres"
            " (whole pixels) that best lines it up with the predicted buildings (pixel IoU),"
            " then score (0: score it where it is).",
            "Line the reference up: largest shift (m, 0: off)",
            0.0,
            10.0,
        ),
    )
    clip_to_area: bool = field(
        default=False,
        metadata=_h(
            "Cut both layers' buildings at the area's edge and score (and write) the parts"
            " inside (a cut part under 1 m² is left out): for an area whose edge cuts"
            " buildings that go on beyond it, e.g. a raster's extent; without an area nothing"
            " is cut. Off: a building counts whole, where its representative point lies (each"
            " building once when areas tile a larger one).",
            "Cut buildings at the area's edge",
        ),
    )
    report: str | None = field(default=None, metadata=_h("JSON file to write the scores to."))


@dataclass(frozen=True)
class ModelInfoConfig:
    """Describe a model file: its spec (what inference needs), without loading its weights."""

    model: str = field(metadata=_h("Model file (.pt or .onnx) to describe."))


@dataclass(frozen=True)
class ExportConfig:
    """Export a model to ONNX: detection then runs on ONNX Runtime, without torch."""

    model: str | None = field(
        metadata=_h("Model file (.pt) written by train (default: the starter model).")
    )
    output: str = field(metadata=_h("ONNX file to write (.onnx)."))
    overwrite: bool = field(default=False, metadata=_h("Replace the output if it exists."))
