"""One run of a study: build data, model and monitor; train; checkpoint; write results.

This module wires components together. It trains nothing itself (see
:mod:`siamlab.train.loop`), measures nothing itself (see :mod:`siamlab.diagnostics`)
and keeps its state in :class:`~siamlab.run_state.RunState`.
"""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from siamlab.config.study import RunSpec
from siamlab.data.batched import with_batched_views
from siamlab.data.build import build_datasets
from siamlab.data.loader import train_loader
from siamlab.data.plan import BatchPlan
from siamlab.data.views import EpochSampler, PairBatches
from siamlab.diagnostics.probe import EvalFeatures
from siamlab.errors import ResultsError
from siamlab.eta.build import create_targets
from siamlab.models.target import momentum_at
from siamlab.objectives import simsiam_loss
from siamlab.provenance import config_yaml
from siamlab.reporting.assemble import build_monitor
from siamlab.results.recorder import Recorder
from siamlab.run_state import Checkpointing, RunState
from siamlab.train.distributed import any_rank, barrier, init_from_env, mean_over_ranks
from siamlab.train.loop import DivergedError, Preempted, Trainer
from siamlab.train.optim import initial_lr, lr_factor, set_lr
from siamlab.train.speed import autocast_dtype, prepare_model
from siamlab.train.views import EpochView, StepView


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``finished``, ``diverged`` or ``skipped`` (already finished)."""

    status: str
    directory: Path
    summary: dict[str, float]


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when present (this process's GPU under torchrun), else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ResultsError("train.device=cuda but no CUDA device is visible; use auto or cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _configure_torch(spec: RunSpec) -> None:
    train = spec.config.train
    if train.threads:
        torch.set_num_threads(train.threads)
    if train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class _Both:
    """Calls several callbacks in order."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def on_step_end(self, view: StepView) -> None:
        for p in self.parts:
            p.on_step_end(view)

    def on_epoch_end(self, view: EpochView) -> None:
        for p in self.parts:
            p.on_epoch_end(view)


def execute_run(
    spec: RunSpec, progress: bool = True, should_stop: Callable[[], bool] | None = None
) -> RunOutcome:
    """Train one run to the end, resuming from its checkpoint if there is one.

    Under torchrun every process calls this; the global batch is split over them,
    BN statistics span them, and rank 0 writes results and checkpoints.

    Args:
        spec: the run.
        progress: show a progress bar (rank 0).
        should_stop: polled between steps; when it returns True (on any rank) the run
            saves a checkpoint and its results (status ``preempted``) and raises Preempted.

    Raises:
        Preempted: a stop was requested; re-running resumes exactly.
        SiamlabError: bad data, an unwritable folder or a mismatched checkpoint.
    """
    cfg = spec.config
    _configure_torch(spec)
    probe_device = select_device(cfg.train.device)
    dist = init_from_env(probe_device.type)
    device = select_device(cfg.train.device, dist.local_rank)
    pairs = 2 if cfg.objective.symmetry == "asymmetric_2x" else 1
    data = build_datasets(cfg.data, spec.seed, pairs)
    data = with_batched_views(data, cfg.data, spec.seed, pairs)  # as data.augment_batched says
    n_images, batch = len(data.train_eval), cfg.train.batch_size
    sampler = EpochSampler(n_images, batch, spec.seed, rank=dist.rank, world_size=dist.world_size)
    run = RunState(spec, device, dist)
    if dist.is_main:
        run.dir.mkdir(parents=True, exist_ok=True)
        (run.dir / "config.yaml").write_text(config_yaml(cfg))
    barrier()
    spe = sampler.num_batches
    total = min(spe * cfg.train.epochs, cfg.train.max_steps or spe * cfg.train.epochs)
    plan = BatchPlan(n_images, batch, spec.seed, dist.rank, dist.world_size)
    run.targets = create_targets(
        cfg.objective.eta,
        run.model,
        data.train_views,
        plan,
        total,
        cfg.model.dim,
        run.dir,
        device,
        cfg.data.num_workers,
        dist,
    )
    start_step = run.resume()
    batch_sampler = PairBatches(sampler, pairs) if pairs > 1 else sampler
    loader = train_loader(cfg.data, data.train_views, batch_sampler, device)

    def batches(epoch: int, start_batch: int) -> DataLoader:
        data.train_views.set_epoch(epoch)
        sampler.set_epoch(epoch, start_batch)
        return loader

    features = EvalFeatures(run.model, device)
    monitor = build_monitor(
        spec,
        features,
        data,
        dist,
        run.dir,
        run.recorder,
        (total, start_step),
        progress,
        has_targets=run.targets is not None,
    )
    run.monitor = monitor
    if run.loaded_monitor_state is not None:  # e.g. an epoch's running loss mid-epoch
        monitor.load_state_dict(run.loaded_monitor_state)
    callbacks = _Both(
        monitor,
        Checkpointing(
            run, cfg.train.checkpoint_every_epochs, cfg.train.checkpoint_every_steps, spe
        ),
    )
    stop = should_stop or (lambda: False)
    trainer = build_trainer(
        run,
        batches,
        callbacks,
        spe,
        total,
        steps_per_epoch=spe,
        epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps,
        targets=run.targets,
        should_stop=(lambda: any_rank(stop())) if dist.world_size > 1 else stop,
        reduce_loss=mean_over_ranks,
    )
    try:
        trainer.fit(start_step)
    except Preempted as exc:
        run.save(exc.step, "preempted")
        raise
    except DivergedError as exc:
        run.write_results("diverged", diverged_step=exc.step)
        return RunOutcome("diverged", run.dir, _summary(run.recorder, cfg.model.dim))
    finally:
        monitor.close()
    return RunOutcome("finished", run.dir, _summary(run.recorder, cfg.model.dim))


def build_trainer(
    run: RunState,
    batches: Callable[[int, int], Any],
    callbacks: Any,
    lr_steps_per_epoch: int,
    total_steps: int,
    **loop: Any,
) -> Trainer:
    """The Trainer of ``run``'s config: loss, optimiser, lr schedule, target momentum, speed.

    Args:
        run: the run's model, optimiser and config.
        batches: ``batches(epoch, start_batch)`` (see :class:`Trainer`).
        callbacks: observers of training.
        lr_steps_per_epoch: batches per epoch of the lr schedule.
        total_steps: the run's planned steps (the momentum schedule runs over them).
        **loop: the loop's own arguments (``steps_per_epoch``, ``epochs``, ``max_steps``,
            ``targets``, ``should_stop``, ``reduce_loss``).
    """
    cfg, model = run.spec.config, run.model
    base_lr = initial_lr(cfg.optim, cfg.train.batch_size)
    target = cfg.model.target
    return Trainer(
        model=model,
        loss_fn=lambda out: simsiam_loss(out, cfg.objective),
        optimizer=run.optimizer,
        set_lr=lambda step, epoch: set_lr(
            run.optimizer,
            base_lr,
            lr_factor(cfg.optim, step, epoch, lr_steps_per_epoch, cfg.train.epochs),
        ),
        batches=batches,
        device=run.device,
        callbacks=callbacks,
        after_step=lambda step: model.update_target(
            momentum_at(target.momentum, target.schedule, step, total_steps)
        ),
        forward=prepare_model(model, cfg.train, run.device),
        autocast_dtype=autocast_dtype(cfg.train.precision),
        channels_last=cfg.train.channels_last,
        **loop,
    )


def _summary(recorder: Recorder, dim: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in ("loss", "epoch_loss", "z_std_train", "z_std_eval", "knn_top1"):
        value = recorder.last(name)
        if isinstance(value, float):
            out[name] = value
    for name in ("z_std_train", "z_std_eval"):
        if name in out:
            out[f"{name}*sqrt(d)"] = out[name] * math.sqrt(dim)
    return out
