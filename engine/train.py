"""Training: the loop from training windows to a model file and a report.

:func:`train` builds the data (:mod:`engine.training.dataset`), trains with AdamW or SGD under a
one-cycle, cosine or constant schedule (mixed precision on CUDA), validates each epoch,
keeps the weights of the epoch with the best validation IoU, chooses the decision threshold
that maximises IoU on that epoch's validation pixels, and writes the model file and the
report. A checkpoint is saved in the report folder after every epoch; ``resume`` continues
from it. On CPU a run is repeatable: everything random is seeded by ``config.seed``.

It runs under ``torchrun`` (:func:`distributed_from_env`: the process group that torchrun's
environment describes, gloo on CPUs, NCCL on GPUs): the model is wrapped in
DistributedDataParallel, each rank trains on its share of the training windows, every rank
validates on all validation windows (so every rank chooses the same best epoch, threshold and
seed settings, equal to one process's), and only rank 0 logs and writes files.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from torch import distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from engine import __version__
from engine.config import STARTER, TrainConfig
from engine.errors import ConfigError, OutputError
from engine.events import NullProgress, Progress, SubProgress, check_canceled
from engine.geo.labels import layer_inputs
from engine.geo.outputs import (
    Input,
    check_folder_output,
    check_not_inputs,
    check_output,
    file_input,
    prepare_outputs,
)
from engine.geo.rasters import raster_inputs
from engine.inference import torchnet
from engine.models.device import describe_device, resolve_device
from engine.models.modelfile import ModelSpec, read_spec, save_model
from engine.models.pretrained import (
    IMAGENET,
    OFFLINE,
    imagenet_normalisation,
    offline_weights,
    package_file,
)
from engine.models.registry import check_decoder_channels, check_tile_size, create_model
from engine.models.starter import starter_model
from engine.polygons.instances import InstanceSettings
from engine.results import TrainResult
from engine.scoring.buildings import BuildingCounts
from engine.training.balance import BalancedSampler
from engine.training.dataset import TrainingData, WindowDataset
from engine.training.finetune import (
    check_fits,
    check_pytorch_files,
    finetune_config,
    freeze_statistics,
    initial_spec,
    kept_stats,
    load_initial_weights,
    set_encoder_trainable,
)
from engine.training.losses import build_loss, targets_for
from engine.training.postprocess import (
    DEFAULT,
    MIN_CHOICE,
    SMALL_HOUSE_M2,
    ValidationWindows,
    choose_min_area,
    choose_settings,
    grid,
    thresholds_near,
)
from engine.training.report import write_report
from engine.training.state import (
    ProbabilityHistogram,
    TrainState,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")


def build_training_data(config: TrainConfig, progress: Progress) -> TrainingData:
    """The training and validation windows (:func:`engine.training.dataset.build_training_data`)."""
    from engine.training.dataset import build_training_data as build

    if config.init_model:
        return build(config, progress, fixed_stats=kept_stats(read_spec(config.init_model)))
    if config.encoder_weights == IMAGENET:
        mean, std = imagenet_normalisation(config.encoder)
        progress.log(
            f"ImageNet weights of {config.encoder} (packaged, no download): each band is scaled"
            f" to 0-1, then normalised with the encoder's mean {mean} and std {std}."
        )
        return build(config, progress, input_scale=(mean, std))
    return build(config, progress)


class _RankProgress(NullProgress):
    """What ranks other than 0 report: nothing, but they see cancellation."""

    def __init__(self, parent: Progress) -> None:
        self._parent = parent

    def is_canceled(self) -> bool:
        """Ask the parent."""
        return self._parent.is_canceled()


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def distributed_from_env(device: str) -> Iterator[None]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1) for one run, and leave
    it after; nothing happens in a plain process or when a group already exists."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        yield
        return
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda and dist.is_nccl_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and values (equal weights, equal digest)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def resolve_encoder_weights(config: TrainConfig) -> str | None:
    """What ``encoder_weights`` means: ``none`` random weights; unset, the packaged ImageNet
    weights where the encoder has them (random weights otherwise), none when fine-tuning (the
    initial model's weights replace them, so their package is not needed); else as given."""
    value = config.encoder_weights
    if value is not None and value.strip().lower() == "none":
        return None
    if value is None and config.init_model:
        return None
    if value is None:
        has = config.encoder in OFFLINE and config.architecture.lower() != "compact"
        return IMAGENET if has else None
    return value


def check_config(config: TrainConfig) -> None:
    """Validate the parameters the loop uses, before any data is read.

    Raises:
        ConfigError: a value out of range or an unknown name.
    """
    if config.optimizer.lower() not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer {config.optimizer!r}; use {' or '.join(OPTIMIZERS)}.")
    if config.schedule.lower() not in SCHEDULES:
        raise ConfigError(f"Unknown schedule {config.schedule!r}; use {', '.join(SCHEDULES)}.")
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}.")
    if not 0 <= config.ema_decay < 1:
        raise ConfigError(
            f"ema_decay must be from 0 (off) to below 1 (0.99 averages about the last 100"
            f" batches), got {config.ema_decay}."
        )
    if not 0 <= config.balance <= 1:
        raise ConfigError(
            f"balance must be from 0 (places drawn by their windows) to 1 (equal shares), got"
            f" {config.balance}."
        )
    if not config.lr > 0 or config.weight_decay < 0 or config.patience < 0 or config.workers < 0:
        raise ConfigError("lr must be > 0; weight_decay, patience and workers must be >= 0.")
    if not 0 < config.separation_width_m <= 5:
        raise ConfigError(
            f"separation_width_m must be above 0 and at most 5 metres, got"
            f" {config.separation_width_m}; 0.3-0.5 m suits most imagery."
        )
    build_loss(config.loss, config.pos_weight, (1.0, config.separation_weight))
    if not config.init_model:  # a fine-tuning takes the starting model's network
        check_decoder_channels(config.architecture, config.decoder_channels)
    check_tile_size(config.architecture, config.encoder, config.tile_size)
    if config.encoder_weights == IMAGENET:
        if config.architecture.lower() == "compact":
            raise ConfigError(
                "The compact model has no pretrained encoder; choose an smp architecture (e.g."
                " unet) with an encoder that has packaged ImageNet weights"
                f" ({', '.join(OFFLINE)})."
            )
        package_file(offline_weights(config.encoder))  # the encoder has them, installed
    elif config.encoder_weights and not Path(config.encoder_weights).expanduser().is_file():
        raise ConfigError(
            f"Encoder weights {config.encoder_weights} do not exist; give a local .pt/.pth file,"
            f" or imagenet for an encoder with packaged ImageNet weights ({', '.join(OFFLINE)})."
        )


def report_dir_for(config: TrainConfig) -> Path:
    """The report folder: ``config.report_dir`` or ``<output stem>_report`` beside the output."""
    if config.report_dir:
        return Path(config.report_dir).expanduser().absolute()
    out = Path(config.output).expanduser().absolute()
    return out.with_name(out.stem + "_report")


#: The files ``train`` writes in its report folder (the checkpoint may be the resumed one).
REPORT_FILES = ("history.json", "summary.json", "loss.png", "metrics.png")
CHECKPOINT_NAME = "checkpoint.pt"


def train_inputs(config: TrainConfig) -> list[Input]:
    """Every file ``train`` reads: rasters (with folders, globs and VRT sources), label,
    validation and labelled-area layers, the initial model and local encoder weights."""
    inputs = [i for item in config.rasters for i in raster_inputs(item, "training raster")]
    inputs += layer_inputs("label layer", config.labels)
    inputs += layer_inputs("validation areas layer", config.validation)
    inputs += layer_inputs("labelled area layer", config.labelled_area)
    inputs += file_input("initial model", config.init_model)
    if config.encoder_weights not in (None, IMAGENET):
        inputs += file_input("encoder weights file", config.encoder_weights)
    return inputs


def check_paths(config: TrainConfig) -> None:
    """Check the model file and the report before any work: writable, not an input (the
    checkpoint may be the one resumed from).

    Raises:
        OutputError: see :func:`engine.geo.outputs.check_output` and
            :func:`engine.geo.outputs.check_not_inputs`.
    """
    check_pytorch_files(output=config.output)
    out = check_output(config.output, config.overwrite)
    report = check_folder_output(report_dir_for(config), "report folder", out)
    earlier = [name for name in REPORT_FILES if (report / name).exists()]
    if earlier and not config.overwrite and not config.resume:
        raise OutputError(
            f"The report folder {report} holds an earlier run's report ({', '.join(earlier)});"
            " choose another output or report folder, or pass --overwrite to replace it."
        )
    outputs: dict[str, str | Path | None] = {"model file": out}
    outputs.update({f"report file {name}": report / name for name in REPORT_FILES})
    check_not_inputs(outputs, file_input("checkpoint to resume from", config.resume))
    prepare_outputs({**outputs, "checkpoint": report / CHECKPOINT_NAME}, train_inputs(config))


def make_device(config: TrainConfig) -> torch.device:
    """The device; under DDP on CUDA, the GPU of this process's LOCAL_RANK."""
    device = resolve_device(config.device)
    if device.type == "cuda" and _rank()[1] > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def make_loader(
    dataset: Dataset[Any], config: TrainConfig, shuffle: bool, device: torch.device
) -> DataLoader[Any]:
    """Batches of ``dataset``; shuffled by a seeded sampler (re-seeded each epoch)."""
    _, world = _rank()
    world = world if shuffle else 1  # every rank validates on all validation windows
    sampler: Any = None
    if shuffle and config.balance > 0 and isinstance(dataset, WindowDataset):
        places = [w.raster for w in dataset.windows]
        sampler = BalancedSampler(places, config.balance, config.seed, _rank()[0], world)
    elif world > 1:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=config.seed)
    elif shuffle:
        sampler = RandomSampler(cast(Sized, dataset), generator=torch.Generator())
    per_rank = math.ceil(len(cast(Sized, dataset)) / world)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=shuffle and per_rank >= config.batch_size,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
    )


def _set_epoch(loader: DataLoader[Any], seed: int, epoch: int) -> None:
    """Seed the sampler and the dataset's augmentation for ``epoch``."""
    sampler = loader.sampler
    if isinstance(sampler, (DistributedSampler, BalancedSampler)):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(seed * 100_003 + epoch)
    set_epoch = getattr(loader.dataset, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum 0.9."""
    params = model.parameters()
    if config.optimizer.lower() == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-batch schedule over ``steps`` batches in all."""
    schedule = config.schedule.lower()
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


class Loop:
    """One training run's model, optimiser and device; runs epochs."""

    def __init__(self, config: TrainConfig, data: TrainingData, device: torch.device) -> None:
        self.config = config
        self.classes = tuple(data.classes)
        self.resolution_m = float(data.resolution_m)
        self.device = device
        model = create_model(
            config.architecture,
            config.encoder,
            len(data.bands),
            len(self.classes),
            decoder_attention=config.decoder_attention,
            decoder_channels=config.decoder_channels,
            encoder_weights=config.encoder_weights,
        )
        if config.init_model:
            load_initial_weights(model, config.init_model)
        if config.freeze_encoder_epochs:
            set_encoder_trainable(model, False)  # refuses a model without an encoder, early
        model = model.to(device)
        # the fast layout for convolutions on GPUs and CPUs (2-core AMD EPYC, Lite0 U-Net:
        # 1.16x the samples a second, 1.39x with engine.heap's allocator; docs/BENCHMARKS.md)
        self.channels_last = device.type in ("cuda", "cpu")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.bare = model
        if _rank()[1] > 1:
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.bare = model
            ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        # the weights averaged over the batches (--ema-decay), batch-norm statistics too
        self.averaged = (
            AveragedModel(
                self.bare, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
            if config.ema_decay > 0
            else None
        )
        if self.averaged is not None:
            self.averaged.update_parameters(self.bare)  # the average starts at the start
        weights = tuple(1.0 if c == "building" else config.separation_weight for c in self.classes)
        self.loss = build_loss(config.loss, config.pos_weight, weights).to(device)
        self.train_loader = make_loader(data.train, config, True, device)
        self.val_loader = make_loader(data.val, config, False, device)
        self.optimizer = make_optimizer(config, self.bare)
        steps = config.epochs * max(len(self.train_loader), 1)
        self.scheduler = make_scheduler(config, self.optimizer, steps)
        cpu_bf16 = config.cpu_bf16 and device.type == "cpu" and torchnet.cpu_bf16()
        self.cpu_bf16 = cpu_bf16
        self.amp = (config.amp and device.type == "cuda") or cpu_bf16
        bf16 = cpu_bf16 or (self.amp and torch.cuda.is_bf16_supported())
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.precision = ("bf16" if bf16 else "fp16") if self.amp else "fp32"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp and not bf16)
        self.batches_done = 0
        self.batches_total = 1

    def _forward(
        self, image: torch.Tensor, mask: torch.Tensor, model: nn.Module | None = None
    ) -> tuple[torch.Tensor, ...]:
        image = image.to(self.device, non_blocking=True)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        target, valid = targets_for(self.classes, mask.to(self.device, non_blocking=True))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = (model or self.model)(image)
        loss = self.loss(logits.float(), target, valid)
        return loss, logits.float(), target, valid

    def _tick(self, progress: Progress) -> None:
        """Check for cancel before a batch; report the share of batches done."""
        check_canceled(progress)
        progress.set_progress(100.0 * self.batches_done / self.batches_total)
        self.batches_done += 1

    def train_epoch(self, progress: Progress) -> float:
        """One pass over the training windows; the mean loss."""
        self.model.train()
        freeze_statistics(self.bare, self.config.keep_batch_norm)
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for image, mask in self.train_loader:
            self._tick(progress)
            loss, _, _, _ = self._forward(image, mask)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.bare)
            total += torch.stack(
                [loss.detach().double() * len(image), total.new_tensor(len(image))]
            )
        _all_reduce(total)
        return float(total[0] / total[1].clamp(min=1))

    @property
    def scored(self) -> nn.Module:
        """The weights validated and written: the averaged ones with --ema-decay, else the
        model's."""
        return self.averaged.module if self.averaged is not None else self.bare

    @torch.no_grad()
    def validate(self, progress: Progress) -> Validation:
        """Mean validation loss, the histogram of building probabilities, and (with a
        separation class) the windows to score buildings on."""
        self.model.eval()
        self.scored.eval()
        hist = ProbabilityHistogram(self.device)
        windows = ValidationWindows(self.resolution_m) if "separation" in self.classes else None
        s = self.classes.index("separation") if windows is not None else 0
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for image, mask in self.val_loader:
            self._tick(progress)
            model = self.averaged.module if self.averaged is not None else None
            loss, logits, target, valid = self._forward(image, mask, model)
            hist.add(torch.sigmoid(logits[:, 0]), target[:, 0] > 0.5, valid[:, 0])
            if windows is not None and len(windows) < windows.limit:
                prob = torch.sigmoid(logits.float()).cpu().numpy()
                labels = mask.reshape(len(mask), *mask.shape[-2:]).numpy()
                windows.add(prob[:, 0], prob[:, s], labels)
            total += torch.stack([loss.double() * len(image), total.new_tensor(len(image))])
        return Validation(float(total[0] / total[1].clamp(min=1)), hist, windows)


@dataclass(frozen=True)
class Validation:
    """What one validation pass measured."""

    loss: float
    hist: ProbabilityHistogram
    windows: ValidationWindows | None


def _all_reduce(tensor: torch.Tensor) -> None:
    if _rank()[1] > 1:
        dist.all_reduce(tensor)


def run_epochs(loop: Loop, state: TrainState, progress: Progress, checkpoint: Path) -> None:
    """Train from ``state.epoch`` to ``config.epochs`` (or an early stop); update ``state``."""
    config, is_main = loop.config, _rank()[0] == 0
    per_epoch = len(loop.train_loader) + len(loop.val_loader)
    loop.batches_total = max(1, per_epoch * (config.epochs - state.epoch))
    first = state.epoch + 1
    began = time.monotonic()
    while state.epoch < config.epochs:
        epoch = state.epoch + 1
        _set_epoch(loop.train_loader, config.seed, epoch)
        if config.freeze_encoder_epochs:
            set_encoder_trainable(loop.bare, epoch > config.freeze_encoder_epochs)
        start = time.monotonic()
        lr = loop.optimizer.param_groups[0]["lr"]
        train_loss = loop.train_epoch(progress)
        checked = loop.validate(progress)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            **validation_scores(checked),
            "lr": lr,
            "seconds": time.monotonic() - start,
        }
        state.add_epoch(record, loop.scored, checked.hist, checked.windows)
        for name, value in record.items():
            if name != "epoch":
                progress.metric(name, value, step=epoch)
        buildings = (
            f", val building F1 {record['val_building_f1']:.4f}"
            if "val_building_f1" in record
            else ""
        )
        progress.log(
            f"Epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss"
            f" {checked.loss:.4f}, val IoU {record['val_iou']:.4f}{buildings} (best epoch"
            f" {state.best_epoch}), {record['seconds']:.1f} s"
        )
        if epoch == first and epoch < config.epochs:
            progress.log(_estimate(record["seconds"], config.epochs - epoch, config.max_minutes))
        if is_main:
            save_checkpoint(checkpoint, state, loop)
        if out_of_time(config, time.monotonic() - began, epoch - first + 1, epoch):
            progress.log(
                f"Time budget of {config.max_minutes:g} minutes: stopping after epoch {epoch}"
                " (another would end after it)."
            )
            break
        if config.patience and epoch - state.best_epoch >= config.patience:
            progress.log(
                f"Early stop: no better validation {state.criterion} for {config.patience} epochs."
            )
            break


def validation_scores(checked: Validation) -> dict[str, float]:
    """An epoch's validation record: loss, pixel scores at 0.5 and (with a separation class)
    building F1."""
    record = {
        "val_loss": checked.loss,
        **{f"val_{k}": v for k, v in checked.hist.counts(0.5).scores().items()},
    }
    if checked.windows is not None:
        record["val_building_f1"] = checked.windows.epoch_f1()
    return record


def out_of_time(config: TrainConfig, elapsed: float, epochs_done: int, epoch: int) -> bool:
    """True when the time budget cannot hold another epoch as long as the mean one so far."""
    if config.max_minutes is None or epoch >= config.epochs:
        return False
    return elapsed + elapsed / max(epochs_done, 1) > config.max_minutes * 60.0


class Written(NamedTuple):
    """The threshold and seed settings a model is written with, how they were found, and
    their building counts on the validation windows (None without a separation class)."""

    threshold: float
    settings: InstanceSettings
    kept: bool  # the starting model's, not chosen on these windows
    counts: BuildingCounts | None
    whole: bool


def few_to_choose_on(
    windows: ValidationWindows | None, hist: ProbabilityHistogram, pixel_m: float
) -> bool:
    """True when the validation windows hold too few buildings to choose settings on:
    fewer than :data:`MIN_CHOICE` (per window), or without a separation class fewer building
    pixels than :data:`MIN_CHOICE` small houses (:data:`SMALL_HOUSE_M2` each) cover."""
    if windows is not None:
        return windows.buildings() < MIN_CHOICE
    pixels = float(hist.pos.sum())
    return pixels * pixel_m**2 < MIN_CHOICE * SMALL_HOUSE_M2


def written_settings(
    windows: ValidationWindows | None,
    hist: ProbabilityHistogram,
    start: ModelSpec | None,
    pixel_m: float,
) -> Written:
    """A model's threshold and settings: a fine-tuning (``start``) on too few validation
    buildings keeps the starting model's (:func:`few_to_choose_on`); otherwise the threshold
    best for pixel IoU and, with a separation class, the seed settings and smallest building
    best for building F1 on the windows (:mod:`engine.training.postprocess`)."""
    if start is not None and few_to_choose_on(windows, hist, pixel_m):
        settings = InstanceSettings.of_model(start) if windows is not None else DEFAULT
        threshold = start.threshold
        settings = replace(settings, threshold=threshold)
        counts = windows.score(settings) if windows is not None else None
        return Written(threshold, settings, True, counts, False)
    threshold = hist.best_threshold()
    if windows is None:
        return Written(threshold, replace(DEFAULT, threshold=threshold), False, None, False)
    near = thresholds_near(lambda t: hist.counts(t).iou, threshold)
    settings, counts, whole = choose_settings(windows, threshold, grid(near))
    settings, counts = choose_min_area(windows, settings, whole)
    return Written(settings.threshold, settings, False, counts, whole)


def scores_as_written(
    hist: ProbabilityHistogram, written: Written, loss: float | None = None
) -> dict[str, float]:
    """Validation scores of a model as detect uses it: pixel scores at its threshold, the
    reference's building pixels and, with the separation class, building F1 with its settings
    and the buildings scored (per window)."""
    pixels = hist.counts(written.threshold)
    record = {f"val_{k}": v for k, v in pixels.scores().items()}
    record["val_building_pixels"] = float(pixels.tp + pixels.fn)
    if loss is not None:
        record["val_loss"] = loss
    if written.counts is not None:
        record["val_building_f1"] = written.counts.f1
        record["val_buildings"] = float(written.counts.reference)
    return record


def starting_scores(
    loop: Loop, spec: ModelSpec, pixel_m: float, progress: Progress
) -> dict[str, float]:
    """The starting model's validation scores (a fine-tuning's "before"), with the threshold
    and settings chosen the way the tuned model's will be (so neither is favoured)."""
    checked = loop.validate(progress)
    written = written_settings(checked.windows, checked.hist, spec, pixel_m)
    scores = scores_as_written(checked.hist, written, checked.loss)
    loop.batches_done = 0  # the epochs' progress starts after this pass
    buildings = (
        f", building F1 {scores['val_building_f1']:.4f}" if "val_building_f1" in scores else ""
    )
    how = "its own settings" if written.kept else "settings chosen there as for the tuned model"
    progress.log(
        f"The starting model on the validation windows, with {how}: IoU"
        f" {scores['val_iou']:.4f}{buildings}."
    )
    return scores


def _log_written(written: Written, windows: ValidationWindows | None, progress: Progress) -> None:
    """Say how the threshold and settings were found."""
    counts = written.counts
    if written.kept:
        found = f"{windows.buildings()} building(s)" if windows is not None else "few buildings"
        scored = f"; building F1 there {counts.f1:.4f}" if counts is not None else ""
        progress.log(
            "The starting model's threshold and settings are kept"
            f" ({written.settings.describe()}): the validation windows hold {found} (counted"
            f" per window), too few to choose them on (at least {MIN_CHOICE}){scored}."
        )
    elif counts is not None:
        basis = (
            "the validation buildings that no window edge cuts; on all of them"
            if written.whole
            else "all the validation buildings (too few are whole in a window):"
        )
        progress.log(
            f"Touching buildings: {written.settings.describe()} (chosen by building F1 on"
            f" {basis} {counts.f1:.4f}, {counts.tp} of {counts.reference} buildings matched)."
        )


def network_name(architecture: str, encoder: str) -> str:
    """``unet/resnet18``, or ``compact`` (which has no encoder to name)."""
    return architecture if architecture.lower() == "compact" else f"{architecture}/{encoder}"


def _estimate(seconds: float, epochs_left: int, budget_minutes: float | None = None) -> str:
    """What the first epoch's time says about the rest of the run, in a user's words."""
    if budget_minutes is not None and seconds * epochs_left > budget_minutes * 60:
        fit = max(0, int(budget_minutes * 60 / seconds) - 1)
        return (
            f"The first epoch took {seconds:.0f} s on this machine: about {fit} more fit in the"
            f" time budget of {budget_minutes:g} minutes."
        )
    left = seconds * epochs_left
    finish = time.strftime("%H:%M", time.localtime(time.time() + left))
    return (
        f"The first epoch took {seconds:.0f} s on this machine: the {epochs_left} epochs left"
        f" should take about {_duration(left)} (done around {finish}; early stopping may end"
        " sooner)."
    )


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``1 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _spec(
    config: TrainConfig,
    data: TrainingData,
    threshold: float,
    metrics: dict[str, float],
    settings: InstanceSettings,
) -> ModelSpec:
    return ModelSpec(
        architecture=config.architecture.lower(),
        encoder=config.encoder,
        in_channels=len(data.bands),
        classes=tuple(data.classes),
        bands=tuple(data.bands),
        mean=tuple(data.stats.mean),
        std=tuple(data.stats.std),
        tile_size=config.tile_size,
        resolution_m=float(data.resolution_m),
        threshold=threshold,
        seed_threshold=settings.seed_threshold,
        min_seed_m2=settings.min_seed_m2,
        seed_erosion_m=settings.seed_erosion_m,
        min_area_m2=settings.min_area_m2,
        decoder_attention=config.decoder_attention,
        decoder_channels=tuple(config.decoder_channels),
        input_dtype=data.input_dtype,
        metrics=metrics,
        engine_version=__version__,
    )


def train(config: TrainConfig, progress: Progress) -> TrainResult:
    """Train a model on ``config``'s rasters and labels; write the model file and report.

    Under ``torchrun`` every rank runs this; they train together (see the module doc).

    Returns:
        ``output`` (model file), ``report`` (folder), ``best_epoch``, ``threshold``,
        ``metrics`` (validation scores at that threshold), ``epochs_run``, ``train_windows``,
        ``val_windows``, ``weights_sha256`` (of the best weights: equal on every rank),
        ``ranks`` (processes that trained together: 1, or torchrun's world size).

    Raises:
        ConfigError, RasterError, LabelsError, ModelFileError (bad checkpoint, initial model
        missing or damaged: ``starter`` is the starter model), OutputError, CancelledError
        (the model file is not written; the last checkpoint stays).
    """
    if (config.init_model or "").strip() == STARTER:
        start = starter_model(progress, "--init-model (QGIS: Start from model)")
        config = replace(config, init_model=start)
    with distributed_from_env(config.device):
        return _train(config, progress)


def _train(config: TrainConfig, progress: Progress) -> TrainResult:
    rank, _ = _rank()
    if rank != 0:
        progress = _RankProgress(progress)
    config = replace(config, encoder_weights=resolve_encoder_weights(config))
    check_config(config)
    check_paths(config)
    start_spec = initial_spec(config)
    if start_spec is not None:
        config = finetune_config(config, start_spec, progress)
    seed_everything(config.seed)
    device = make_device(config)
    data = build_training_data(config, SubProgress(progress, 0, 10))
    if start_spec is not None:
        check_fits(start_spec, len(data.bands), data.input_dtype, str(config.init_model))
    report = report_dir_for(config)
    checkpoint = report / CHECKPOINT_NAME
    seed_everything(config.seed)  # the same initial weights whatever the data builder drew
    loop = Loop(config, data, device)
    n_params = sum(p.numel() for p in loop.bare.parameters())
    progress.log(
        f"Training {network_name(config.architecture, config.encoder)} ({n_params:,} parameters) on"
        f" {describe_device(device)}: {len(data.train)} training, {len(data.val)} validation"
        f" windows of {config.tile_size} px, classes {', '.join(data.classes)}"
        + (" (bf16 autocast: this CPU has a bf16 path; train --no-cpu-bf16 or"
           " FOOTPRINT_NO_BF16=1 trains in fp32)" if loop.cpu_bf16 else "")
    )  # fmt: skip
    state = TrainState()
    if config.resume:
        state = load_checkpoint(config.resume, config, loop)
        progress.log(f"Resuming after epoch {state.epoch} from {config.resume}.")
    if rank == 0:
        report.mkdir(parents=True, exist_ok=True)
    before = None
    pixel_m = float(data.resolution_m)
    if start_spec is not None and not config.resume:
        before = starting_scores(loop, start_spec, pixel_m, SubProgress(progress, 10, 10))
    run_epochs(loop, state, SubProgress(progress, 10, 98), checkpoint)
    if state.best_hist is None:
        raise ConfigError("No epoch was trained; set epochs >= 1.")
    windows = state.best_windows
    if windows is None and start_spec is not None and "separation" in loop.classes:
        # resumed after the best epoch: its windows are not in the checkpoint
        written = Written(
            start_spec.threshold, InstanceSettings.of_model(start_spec), True, None, False
        )
    else:
        written = written_settings(windows, state.best_hist, start_spec, pixel_m)
    threshold, settings = written.threshold, written.settings
    _, metrics = state.choose_threshold(threshold)
    counts = written.counts
    if counts is not None:
        metrics.update(
            building_precision=counts.precision,
            building_recall=counts.recall,
            building_f1=counts.f1,
        )
    _log_written(written, windows, progress)
    best_record = state.history[state.best_epoch - 1]
    result: TrainResult = {
        "output": str(Path(config.output).expanduser().absolute()),
        "report": str(report),
        "best_epoch": state.best_epoch,
        "threshold": threshold,
        "metrics": metrics,
        "epochs_run": state.epoch,
        "train_windows": len(data.train),
        "val_windows": len(data.val),
        "weights_sha256": weights_digest(state.best_state),
        "ranks": _rank()[1],
        "precision": loop.precision,
        "before": before,
        "after": {
            **{k: v for k, v in best_record.items() if k.startswith("val_")},
            **scores_as_written(state.best_hist, written),
        },
    }
    if rank == 0:
        loop.bare.load_state_dict(state.best_state)
        save_model(
            config.output,
            loop.bare,
            _spec(config, data, threshold, metrics, settings),
            overwrite=config.overwrite,
        )
        write_report(report, state.history, {**result, "data": data.summary})
        checkpoint.unlink(missing_ok=True)
    if _rank()[1] > 1:
        dist.barrier()
    progress.set_progress(100.0)
    progress.log(
        f"Best epoch {state.best_epoch} (by {state.criterion}): IoU {metrics['iou']:.4f} at"
        f" threshold {threshold:.2f};"
        f" model written to {result['output']}"
    )
    return result
