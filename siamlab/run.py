"""One run of a study: build data, model and monitor; train; checkpoint; write results.

This module wires components together. It trains nothing itself (see
:mod:`siamlab.train.loop`) and measures nothing itself (see :mod:`siamlab.diagnostics`).
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
from siamlab.data.build import DataBundle, build_datasets
from siamlab.data.plan import BatchPlan
from siamlab.data.views import EpochSampler, PairBatches
from siamlab.diagnostics.eta_stats import EtaStatsHook
from siamlab.diagnostics.hooks import create_hooks
from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.probe import ProbeCache, fixed_subset
from siamlab.diagnostics.sinks import ProgressSink, RecorderSink, Sink, TensorBoardSink
from siamlab.errors import ResultsError
from siamlab.eta.build import create_targets
from siamlab.eta.provider import TargetProvider
from siamlab.models.siamese import create_model
from siamlab.models.target import momentum_at
from siamlab.objectives import simsiam_loss
from siamlab.provenance import config_diff, config_yaml, now, versions
from siamlab.results.recorder import Recorder
from siamlab.results.store import write_run
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.loop import DivergedError, EpochView, Preempted, StepView, Trainer
from siamlab.train.optim import create_optimizer, initial_lr, lr_factor, set_lr


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``finished``, ``diverged`` or ``skipped`` (already finished)."""

    status: str
    directory: Path
    summary: dict[str, float]


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ResultsError("train.device=cuda but no CUDA device is visible; use auto or cpu")
    return torch.device(name)


class _Checkpointing:
    """Saves the checkpoint, then the matching results.

    After an epoch's diagnostics, and every N steps inside an epoch if asked.
    """

    def __init__(self, run: "_Run", every_epochs: int, every_steps: int | None, spe: int) -> None:
        self.run, self.every_epochs, self.every_steps, self.spe = (
            run,
            every_epochs,
            every_steps,
            spe,
        )

    def on_step_end(self, view: StepView) -> None:
        # a step that ends an epoch is saved after the epoch's diagnostics instead
        if self.every_steps and view.step % self.every_steps == 0 and view.step % self.spe:
            self.run.save(view.step, "running")

    def on_epoch_end(self, view: EpochView) -> None:
        if view.epoch % self.every_epochs == 0 or view.is_last:
            self.run.save(view.step, "finished" if view.is_last else "running")


class _Both:
    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def on_step_end(self, view: StepView) -> None:
        for p in self.parts:
            p.on_step_end(view)

    def on_epoch_end(self, view: EpochView) -> None:
        for p in self.parts:
            p.on_epoch_end(view)


class _Run:
    """State of one run while it executes."""

    def __init__(self, spec: RunSpec, data: DataBundle, device: torch.device) -> None:
        cfg = spec.config
        self.spec, self.data, self.device = spec, data, device
        self.dir = spec.directory()
        torch.manual_seed(spec.seed)
        self.model = create_model(cfg.model).to(device)
        self.optimizer = create_optimizer(self.model, cfg.optim, cfg.train.batch_size)
        self.recorder = Recorder()
        self.targets: TargetProvider | None = None
        self.created = now()

    def attrs(self, status: str) -> dict[str, Any]:
        cfg = self.spec.config
        return {
            "study": self.spec.study,
            "variant": self.spec.variant,
            "seed": self.spec.seed,
            "profile": self.spec.profile,
            "paper": self.spec.paper,
            "status": status,
            "config": config_yaml(cfg),
            "dim": cfg.model.dim,
            "std_reference": 1 / math.sqrt(cfg.model.dim),
            "created": self.created,
            "updated": now(),
            **versions(),
        }

    def save(self, step: int, status: str) -> None:
        state = {
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "recorder": self.recorder.state_dict(),
            "config": self.spec.config.model_dump(mode="json"),
            "created": self.created,
            "rng_cpu": torch.get_rng_state(),
            "targets": self.targets.state_dict() if self.targets else None,
        }
        save_checkpoint(self.dir / "checkpoints", state)
        self.write_results(status)

    def write_results(self, status: str, **extra: Any) -> None:
        write_run(self.dir, self.recorder.to_dataset({**self.attrs(status), **extra}))

    def resume(self) -> int:
        """Load the checkpoint if there is one; return its global step (0 without one)."""
        state = load_checkpoint(self.dir / "checkpoints")
        if state is None:
            return 0
        current = self.spec.config.model_dump(mode="json")
        diffs = [d for d in config_diff(state["config"], current) if not d.startswith("output.")]
        if diffs:
            raise ResultsError(
                f"{self.dir} holds a checkpoint of a different config; refusing to resume. "
                "Differences:\n  "
                + "\n  ".join(diffs)
                + "\nDelete the folder to start over, or change output.root."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.recorder.load_state_dict(state["recorder"])
        torch.set_rng_state(state["rng_cpu"])
        if self.targets is not None:
            self.targets.load_state_dict(state["targets"])
        self.created = state["created"]
        return int(state["step"])


def _configure_torch(spec: RunSpec) -> None:
    train = spec.config.train
    if train.threads:
        torch.set_num_threads(train.threads)
    if train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def execute_run(
    spec: RunSpec, progress: bool = True, should_stop: Callable[[], bool] | None = None
) -> RunOutcome:
    """Train one run to the end, resuming from its checkpoint if there is one.

    Args:
        spec: the run.
        progress: show a progress bar.
        should_stop: polled between steps; when it returns True the run saves a
            checkpoint and its results (status ``preempted``) and raises Preempted.

    Raises:
        Preempted: a stop was requested; re-running resumes exactly.
        SiamlabError: bad data, an unwritable folder or a mismatched checkpoint.
    """
    cfg = spec.config
    _configure_torch(spec)
    device = select_device(cfg.train.device)
    pairs = 2 if cfg.objective.symmetry == "asymmetric_2x" else 1
    data = build_datasets(cfg.data, spec.seed, pairs)
    sampler = EpochSampler(len(data.train_eval), cfg.train.batch_size, spec.seed)
    run = _Run(spec, data, device)
    run.dir.mkdir(parents=True, exist_ok=True)
    (run.dir / "config.yaml").write_text(config_yaml(cfg))
    spe = sampler.num_batches
    total = min(spe * cfg.train.epochs, cfg.train.max_steps or spe * cfg.train.epochs)
    plan = BatchPlan(len(data.train_eval), cfg.train.batch_size, spec.seed)
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
    )
    start_step = run.resume()
    loader = DataLoader(
        data.train_views,
        batch_sampler=PairBatches(sampler, pairs) if pairs > 1 else sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
    )

    def batches(epoch: int, start_batch: int) -> DataLoader:
        data.train_views.set_epoch(epoch)
        sampler.set_epoch(epoch, start_batch)
        return loader

    base_lr = initial_lr(cfg.optim, cfg.train.batch_size)
    diag = cfg.diagnostics
    probe_sets = {
        "bank": fixed_subset(data.train_eval, diag.bank_size),
        "test": data.test_eval,
        "probe": fixed_subset(data.train_eval, diag.probe_size),
    }
    sinks: list[Sink] = [RecorderSink(run.recorder)]
    if cfg.output.tensorboard:
        sinks.append(TensorBoardSink(run.dir / "tb", purge_step=start_step + 1))
    if progress:
        desc = f"{spec.variant}/seed{spec.seed}"
        sinks.append(ProgressSink(total, start_step, cfg.model.dim, desc))
    hooks = create_hooks(diag, data.num_classes)
    if run.targets is not None:
        hooks.append(EtaStatsHook())
    monitor = Monitor(
        hooks,
        sinks,
        lambda view: ProbeCache(view.model, probe_sets, device, batch_size=256),
    )
    trainer = Trainer(
        model=run.model,
        loss_fn=lambda out: simsiam_loss(out, cfg.objective),
        optimizer=run.optimizer,
        set_lr=lambda step, epoch: set_lr(
            run.optimizer, base_lr, lr_factor(cfg.optim, step, epoch, spe, cfg.train.epochs)
        ),
        batches=batches,
        steps_per_epoch=spe,
        epochs=cfg.train.epochs,
        device=device,
        callbacks=_Both(
            monitor,
            _Checkpointing(
                run, cfg.train.checkpoint_every_epochs, cfg.train.checkpoint_every_steps, spe
            ),
        ),
        max_steps=cfg.train.max_steps,
        after_step=lambda step: run.model.update_target(
            momentum_at(cfg.model.target.momentum, cfg.model.target.schedule, step, total)
        ),
        targets=run.targets,
        should_stop=should_stop or (lambda: False),
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
