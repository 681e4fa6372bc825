"""Assemble one run: data, model, optimiser and lr schedule, eta, monitor, checkpointer.

:func:`build_run` constructs every piece once, restores a checkpoint if there is one,
and returns a frozen :class:`Run`; nothing is set on it afterwards. Training it is
:func:`siamlab.run.train_run.train_run`'s job.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn

from siamlab.config.schema import RunConfig
from siamlab.config.study import RunSpec
from siamlab.data.plan import BatchPlan
from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.probe import EvalFeatures
from siamlab.eta.build import create_targets
from siamlab.eta.provider import TargetProvider
from siamlab.models.siamese import SiameseNet, create_model
from siamlab.models.target import momentum_at
from siamlab.provenance import config_yaml
from siamlab.reporting.assemble import build_monitor
from siamlab.results.recorder import Recorder
from siamlab.run.checkpointer import (
    Checkpointer,
    CpuRandomStream,
    Part,
    SaveSchedule,
    check_same_data,
    read_checkpoint,
)
from siamlab.run.collapse_stop import collapse_stop, never
from siamlab.run.results_file import ResultsFile
from siamlab.run.training_data import build_training_data
from siamlab.train.device import checkpoint_threads, resume_threads
from siamlab.train.distributed import (
    DistInfo,
    any_rank,
    barrier,
    convert_batchnorm,
    mean_over_ranks,
)
from siamlab.train.length import RunLength
from siamlab.train.loop import Trainer
from siamlab.train.optim import create_optimizer, initial_lr, lr_factor, set_lr
from siamlab.train.speed import autocast_dtype, prepare_model, resolve_speed
from siamlab.train.step import SimSiamStep


@dataclass(frozen=True)
class Run:
    """Everything one run is made of, built once by :func:`build_run`."""

    spec: RunSpec
    directory: Path
    dist: DistInfo
    model: SiameseNet
    trainer: Trainer
    monitor: Monitor
    checkpointer: Checkpointer
    results: ResultsFile  # with the recorder of the run's values
    start_step: int  # 0, or the checkpoint's step
    length: RunLength


def build_model(cfg: RunConfig, seed: int, device: torch.device, dist: DistInfo) -> SiameseNet:
    """The run's network on ``device``, the same initial weights on every rank (seeded)."""
    torch.manual_seed(seed)
    model: nn.Module = create_model(cfg.model)
    if dist.world_size > 1:  # SyncBN, heads included (docs/paper-recipes.md#batchnorm-placement)
        model = convert_batchnorm(model, device.type)
    return cast(SiameseNet, model.to(device))  # BN swapped in place


def run_length(cfg: RunConfig, steps_per_epoch: int) -> RunLength:
    """How long ``cfg`` trains with ``steps_per_epoch`` batches an epoch (``max_steps`` cap)."""
    epochs = cfg.train.epochs
    total = steps_per_epoch * epochs
    return RunLength(steps_per_epoch, epochs, min(total, cfg.train.max_steps or total))


def lr_schedule(
    cfg: RunConfig, optimizer: torch.optim.Optimizer, length: RunLength
) -> Callable[[int, int], float]:
    """``set_lr(step, epoch)``: sets the lr of 0-based (step, epoch) and returns the encoder's."""
    base_lr = initial_lr(cfg.optim, cfg.train.batch_size)

    def lr_at(step: int, epoch: int) -> float:
        factor = lr_factor(cfg.optim, step, epoch, length.steps_per_epoch, length.epochs)
        return set_lr(optimizer, base_lr, factor)

    return lr_at


def build_step(
    cfg: RunConfig,
    model: SiameseNet,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    length: RunLength,
    eta: TargetProvider | None = None,
    reduce_loss: Callable[[float], float] = float,
) -> SimSiamStep:
    """The SGD step of ``cfg``: loss, lr schedule, target momentum, speed options.

    ``train.precision`` / ``train.channels_last`` ``auto`` are resolved for ``device``.
    """
    target, train = cfg.model.target, resolve_speed(cfg.train, device)
    return SimSiamStep(
        model=model,
        forward=prepare_model(model, train, device),
        optimizer=optimizer,
        objective=cfg.objective,
        set_lr=lr_schedule(cfg, optimizer, length),
        momentum=lambda step: momentum_at(
            target.momentum, target.schedule, step, length.total_steps
        ),
        device=device,
        eta=eta,
        autocast_dtype=autocast_dtype(train.precision),
        reduce_loss=reduce_loss,
    )


def build_run(
    spec: RunSpec,
    device: torch.device,
    dist: DistInfo,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> Run:
    """Build every piece of ``spec``'s run and restore its checkpoint if it has one.

    Rank 0 creates the run's folder and its ``config.yaml``.

    Raises:
        SiamlabError: bad data, an unwritable folder or a checkpoint of another config.
    """
    cfg, directory = spec.config, spec.directory()
    # precision / channels_last "auto" made concrete for this device: the loop, the results
    # and the checkpoint's resume check see what runs (config.yaml keeps what was asked)
    resolved = cfg.model_copy(update={"train": resolve_speed(cfg.train, device)})
    config = resolved.model_dump(mode="json")
    # read first: the thread count a resume continues on decides the data path too
    # (siamlab.data.resident compares it with the cores)
    saved = read_checkpoint(directory, config)
    threads = None if saved is None else checkpoint_threads(saved)
    if saved is not None:
        resume_threads(cfg.train, device, threads, str(directory), warn=dist.is_main)
    training = build_training_data(cfg, spec.seed, dist, device)
    fingerprint = training.data.fingerprint
    if saved is not None:
        check_same_data(saved, fingerprint, directory)
    data, n_images, batch = training.data, len(training.data.train_eval), cfg.train.batch_size
    model = build_model(cfg, spec.seed, device, dist)
    optimizer = create_optimizer(model, cfg.optim, batch)
    if dist.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.yaml").write_text(config_yaml(cfg))
    barrier()
    length = run_length(cfg, training.steps_per_epoch)
    spe, epochs = length.steps_per_epoch, length.epochs
    plan = BatchPlan(n_images, batch, spec.seed, dist.rank, dist.world_size)
    eta = create_targets(
        cfg.objective.eta,
        model,
        data.train_views,
        plan,
        length.total_steps,
        cfg.model.dim,
        directory,
        device,
        cfg.data.num_workers,
        dist,
        training.memo,
    )
    recorder = Recorder()
    results = ResultsFile(spec, directory, recorder, dist, resolved.train, device, fingerprint)
    start_step = 0 if saved is None else int(saved["step"])
    features = EvalFeatures(model, device)
    has_targets = eta is not None
    monitor = build_monitor(
        spec, features, data, dist, directory, recorder, length, start_step, progress, has_targets
    )
    parts = [
        Part("model", model),
        Part("optimizer", optimizer),
        Part("recorder", recorder),
        Part("rng_cpu", CpuRandomStream()),
        Part("created", results),
        Part("monitor", monitor),  # e.g. an epoch's running loss mid-epoch
    ]
    if eta is not None:
        per_rank, every_rank = (
            getattr(eta, k, False) for k in ("per_rank_state", "every_rank_state")
        )
        parts.append(Part("targets", eta, per_rank=per_rank, every_rank=every_rank))
    checkpointer = Checkpointer(directory, config, parts, results, dist, fingerprint)
    saves = SaveSchedule(
        checkpointer, cfg.train.checkpoint_every_epochs, cfg.train.checkpoint_every_steps, spe
    )
    stop = should_stop or (lambda: False)
    trainer = Trainer(
        sgd_step=build_step(cfg, model, optimizer, device, length, eta, mean_over_ranks),
        batches=training.batches,
        steps_per_epoch=spe,
        epochs=epochs,
        monitor=monitor,
        saver=saves,
        should_stop=(lambda: any_rank(stop())) if dist.world_size > 1 else stop,
        stop_after_epoch=collapse_stop(monitor, dist) if cfg.train.stop_on_collapse else never,
        channels_last=resolved.train.channels_last is True,
    )
    if saved is not None:  # last: nothing built above can move the restored state
        checkpointer.restore(saved)
    results.trains_from(start_step + 1, threads)
    return Run(
        spec, directory, dist, model, trainer, monitor, checkpointer, results, start_step, length
    )
