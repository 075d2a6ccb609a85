"""Train a building segmentation model on rasters and building polygons."""

from __future__ import annotations

import os
from typing import Any, cast

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterVectorLayer,
)

from ...engine.config import STARTER, TrainConfig  # plain dataclasses: no torch, no GDAL
from ...engine.results import TrainResult
from .base import FootprintAlgorithm
from .common import WEB_LAYERS_HELP, Inputs, add_model_outputs, max_render_parameter
from .options import Option, add_options

STARTER_HELP = (
    "Fine-tune the starter model that comes with Footprint (trained on drone imagery of"
    " Banepa, Zanzibar, Nairobi and Catanduanes; RGB drone or aerial imagery of about 5-30 cm"
    " pixels) on these rasters and polygons: engine option --init-model starter. Leave Start"
    " from model empty."
)


class Train(FootprintAlgorithm):
    """``footprint:train``: engine ``train``."""

    NAME = "train"
    DISPLAY_NAME = "Train building model"
    HELP = (
        "Trains a U-Net (or another segmentation model) to find buildings, on one or more "
        "rasters and layers of known buildings, and writes one model file that Detect and "
        "Predict use.\n\n"
        "<b>Training rasters</b>: images (any CRS, band count and size; all with the same "
        "bands), web layers included (see below). <b>Building polygons</b>: known buildings "
        "(any CRS); areas of the rasters "
        "without polygons are taught as background, so label every building in them.\n"
        "<b>Labelled area</b> (optional): polygons where every building is digitised; "
        "outside them the imagery is neither taught as background nor scored, so a few "
        "buildings digitised in one corner of a large orthophoto are enough.\n"
        "<b>Pretrained encoder</b>: imagenet starts the encoder from ImageNet weights that "
        "come with the engine (no download; encoders tu-tf_efficientnet_lite0, lite1, lite2). "
        "<b>Start from model</b> (optional): fine-tune a Footprint model file on this imagery "
        "(its architecture, classes, bands and normalisation are kept). <b>Start from the "
        "starter model</b>: fine-tune the starter model that comes with Footprint instead "
        "(RGB drone or aerial imagery of about 5-30 cm pixels): the quickest way to a model "
        "for your imagery.\n"
        "<b>Validation areas</b> (optional): polygons marking the area held out to choose the "
        "best epoch and the decision threshold; else <b>Validation fraction</b> of the area "
        "is held out as blocks (0: nothing; the training windows then pick the best epoch "
        "and threshold, a fit to this imagery).\n"
        "<b>Architecture</b>: unet (default), unetplusplus, fpn, deeplabv3plus, ... or "
        "compact (a 30k-parameter U-Net, fast on a CPU). <b>Encoder</b>: the backbone, e.g. "
        "resnet34, resnet18, efficientnet-b0 (ignored by compact).\n"
        "<b>Epochs</b>, <b>Tile size</b> (pixels per training window), <b>Batch size</b>, "
        "<b>Learning rate</b> (peak of the schedule).\n"
        "Advanced: <b>Loss</b> (bce, dice, jaccard, focal or sums like bce+dice), "
        "<b>Building weight</b> in BCE, <b>Augment</b> (flips, rotations, colour jitter), "
        "<b>Share of empty windows kept</b>, <b>Separation class</b> (learn where buildings "
        "touch, so Detect gives one polygon per building; its seed settings are chosen on "
        "validation by building F1), its <b>width</b> and <b>loss weight</b>, "
        "<b>Decoder attention</b> (scSE), "
        "<b>Encoder weights</b> (a local file of pretrained weights; nothing is downloaded), "
        "<b>Freeze the encoder</b> for the first epochs of a fine-tuning, "
        "<b>Random seed</b>, <b>Patience</b> (stop after so many epochs without a better "
        "validation building F1, or IoU without a separation class; 0 never).\n\n"
        "<b>Model file</b>: the .pt to write (replaced if it exists: Processing asks first). "
        "<b>Report folder</b> (optional): loss and metric plots and history; by default "
        "beside the model file.\n"
        "Outputs the validation IoU, F1, precision and recall at the chosen threshold, and "
        "the threshold, for use in models. Uses the device of Plugins > Footprint > Settings.\n"
        + WEB_LAYERS_HELP
        + " For training, the ground resolution is that of <b>Start from model</b>, else the "
        "starter model's, and <b>Extent</b> is the area drawn of every web layer."
    )

    RASTERS = "RASTERS"
    LABELS = "LABELS"
    VALIDATION = "VALIDATION"
    VAL_FRACTION = "VAL_FRACTION"
    ARCHITECTURE = "ARCHITECTURE"
    ENCODER = "ENCODER"
    EPOCHS = "EPOCHS"
    TILE_SIZE = "TILE_SIZE"
    BATCH_SIZE = "BATCH_SIZE"
    LR = "LR"
    LOSS = "LOSS"
    POS_WEIGHT = "POS_WEIGHT"
    AUGMENT = "AUGMENT"
    EMPTY_KEEP_FRACTION = "EMPTY_KEEP_FRACTION"
    SEPARATION = "SEPARATION"
    SEPARATION_WIDTH = "SEPARATION_WIDTH"
    DECODER_ATTENTION = "DECODER_ATTENTION"
    ENCODER_WEIGHTS = "ENCODER_WEIGHTS"
    PRETRAINED = "PRETRAINED"
    LABELLED_AREA = "LABELLED_AREA"
    INIT_MODEL = "INIT_MODEL"
    STARTER_MODEL = "STARTER_MODEL"
    FREEZE_ENCODER_EPOCHS = "FREEZE_ENCODER_EPOCHS"
    EXTENT = "EXTENT"
    MAX_RENDER_MPX = "MAX_RENDER_MPX"
    #: Choices of PRETRAINED: the engine decides (ImageNet where the encoder has packaged
    #: weights), the packaged ImageNet weights, or random weights.
    PRETRAINED_CHOICES = ("auto", "imagenet", "none")
    SEED = "SEED"
    PATIENCE = "PATIENCE"
    OUTPUT = "OUTPUT"
    REPORT_DIR = "REPORT_DIR"
    VAL_IOU = "VAL_IOU"
    VAL_F1 = "VAL_F1"
    VAL_PRECISION = "VAL_PRECISION"
    VAL_RECALL = "VAL_RECALL"
    THRESHOLD = "THRESHOLD"
    BEST_EPOCH = "BEST_EPOCH"

    #: Model and training options in the dialog's order (after the layers).
    OPTIONS = (
        Option(ARCHITECTURE, TrainConfig, "architecture"),
        Option(ENCODER, TrainConfig, "encoder"),
        Option(VAL_FRACTION, TrainConfig, "val_fraction"),
        Option(EPOCHS, TrainConfig, "epochs"),
        Option(TILE_SIZE, TrainConfig, "tile_size"),
        Option(BATCH_SIZE, TrainConfig, "batch_size"),
        Option(LR, TrainConfig, "lr"),
        Option(LOSS, TrainConfig, "loss", advanced=True),
        Option(POS_WEIGHT, TrainConfig, "pos_weight", advanced=True),
        Option(EMPTY_KEEP_FRACTION, TrainConfig, "empty_keep_fraction", advanced=True),
        # added after 0.1.0: optional, so Processing models saved before still run
        Option(SEPARATION_WIDTH, TrainConfig, "separation_width_m", advanced=True, optional=True),
        Option("SEPARATION_WEIGHT", TrainConfig, "separation_weight", advanced=True, optional=True),
        Option(SEED, TrainConfig, "seed", advanced=True),
        Option(PATIENCE, TrainConfig, "patience", advanced=True),
        Option(AUGMENT, TrainConfig, "augment", advanced=True),
        # renamed from BOUNDARY (after 0.1.0): optional, so Processing models saved before still run
        Option(SEPARATION, TrainConfig, "separation", advanced=True, optional=True),
        Option(DECODER_ATTENTION, TrainConfig, "decoder_attention", advanced=True),
        Option(
            FREEZE_ENCODER_EPOCHS,
            TrainConfig,
            "freeze_encoder_epochs",
            advanced=True,
            optional=True,
        ),
        Option("SCALE_JITTER", TrainConfig, "scale_jitter", advanced=True, optional=True),
        Option("COLOUR_JITTER", TrainConfig, "colour_jitter", advanced=True, optional=True),
        Option("BALANCE", TrainConfig, "balance", advanced=True, optional=True),
        Option("EMA_DECAY", TrainConfig, "ema_decay", advanced=True, optional=True),
    )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self._add_inputs()
        add_options(self, self.OPTIONS)
        self.addParameter(
            QgsProcessingParameterEnum(
                self.PRETRAINED,
                self.tr("Pretrained encoder (imagenet: tu-tf_efficientnet_lite0/1/2)"),
                list(self.PRETRAINED_CHOICES),
                defaultValue="auto",
                optional=True,
                usesStaticStrings=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.INIT_MODEL,
                self.tr("Start from model (fine-tune)"),
                extension="pt",
                optional=True,
            )
        )
        starter = QgsProcessingParameterBoolean(
            self.STARTER_MODEL,
            self.tr("Start from the starter model (fine-tune)"),
            False,
            optional=True,  # added after 0.1.0: Processing models saved before still validate
        )
        starter.setHelp(self.tr(STARTER_HELP))
        self.addParameter(starter)
        self.add_advanced(
            QgsProcessingParameterFile(
                self.ENCODER_WEIGHTS,
                self.tr("Encoder weights (local file)"),
                optional=True,
                fileFilter="Weights (*.pt *.pth *.safetensors *.bin);;All files (*.*)",
            )
        )
        add_model_outputs(
            self,
            (self.OUTPUT, "Model file"),
            self.REPORT_DIR,
            (
                (self.VAL_IOU, "Validation IoU"),
                (self.VAL_F1, "Validation F1"),
                (self.VAL_PRECISION, "Validation precision"),
                (self.VAL_RECALL, "Validation recall"),
                (self.THRESHOLD, "Decision threshold"),
                (self.BEST_EPOCH, "Best epoch"),
            ),
        )

    def _add_inputs(self) -> None:
        polygon = QgsProcessing.TypeVectorPolygon
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.RASTERS, self.tr("Training rasters"), QgsProcessing.TypeRaster
            )
        )
        self.addParameter(
            QgsProcessingParameterMultipleLayers(self.LABELS, self.tr("Building polygons"), polygon)
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.VALIDATION, self.tr("Validation areas"), [polygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.LABELLED_AREA,
                self.tr("Labelled area (labels complete inside)"),
                [polygon],
                optional=True,
            )
        )
        self.addParameter(  # added with web layers: optional, as every later parameter
            QgsProcessingParameterExtent(
                self.EXTENT, self.tr("Extent (of web layers: the area drawn)"), optional=True
            )
        )
        self.addParameter(max_render_parameter(self.MAX_RENDER_MPX))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``train``; return the model file, report folder and validation scores."""
        inputs = Inputs(self, parameters, context, feedback)
        web = inputs.web_rendering(self.EXTENT, self.INIT_MODEL, self.MAX_RENDER_MPX)
        args = ["--rasters", *inputs.rasters(self.RASTERS, web)]
        args += ["--labels", *inputs.vectors(self.LABELS)]
        for name, option in (
            (self.VALIDATION, "--validation"),
            (self.LABELLED_AREA, "--labelled-area"),
        ):
            if parameters.get(name):
                args += [option, inputs.vector(name)]
        args += self._init_args(inputs)
        args += ["--output", inputs.output(self.OUTPUT, "pt")]
        args += self._model_args(inputs)
        report = self.parameterAsFileOutput(parameters, self.REPORT_DIR, context)
        if report:
            args += ["--report-dir", os.path.abspath(report)]
        result = cast(
            TrainResult, self.engine("train", [*args, "--overwrite", *self.device_args()], feedback)
        )
        metrics = result.get("metrics") or {}
        return {
            self.OUTPUT: result["output"],
            self.REPORT_DIR: result["report"],
            self.VAL_IOU: metrics.get("iou"),
            self.VAL_F1: metrics.get("f1"),
            self.VAL_PRECISION: metrics.get("precision"),
            self.VAL_RECALL: metrics.get("recall"),
            self.THRESHOLD: result.get("threshold"),
            self.BEST_EPOCH: result.get("best_epoch"),
        }

    def checkParameterValues(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        """Refuse a model file and the starter model both as the start."""
        if parameters.get(self.INIT_MODEL) and self.parameterAsBool(
            parameters, self.STARTER_MODEL, context
        ):
            return False, self.tr(
                "Give either Start from model or Start from the starter model, not both."
            )
        return cast(tuple[bool, str], super().checkParameterValues(parameters, context))

    def _init_args(self, inputs: Inputs) -> list[str]:
        """``--init-model``: the model file given, the starter model, or none ([])."""
        if self.parameterAsBool(inputs.parameters, self.STARTER_MODEL, inputs.context):
            return ["--init-model", STARTER]
        init = inputs.file(self.INIT_MODEL)
        return ["--init-model", init] if init else []

    def _model_args(self, inputs: Inputs) -> list[str]:
        """Engine options for the model and training options and the encoder weights."""
        args = inputs.options(self.OPTIONS)
        pretrained = self.parameterAsEnumString(inputs.parameters, self.PRETRAINED, inputs.context)
        weights = inputs.file(self.ENCODER_WEIGHTS) or pretrained
        return args if weights in ("", "auto") else [*args, "--encoder-weights", weights]
