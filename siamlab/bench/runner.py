"""Benchmark one run config: siamlab's Trainer step vs the reference loop, and the loader.

The arms train on the same batches, drawn once from the run's real DataLoader and
cycled, so the step comparison excludes data loading; the loader is timed on its own
(iterated without training). siamlab's arm is the real :class:`~siamlab.train.loop.Trainer`
with the run's model, optimiser, schedule, speed options and default step diagnostics
(hooks and sinks as in :func:`siamlab.run.assemble.build_run`); the epoch-end diagnostics are
left out (their amortised cost is ``benchmarks/diagnostics_overhead.py``'s subject).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from siamlab.bench.breakdown import time_parts
from siamlab.bench.loader_rate import LoaderRate, other_path, time_loader
from siamlab.bench.measure import (
    Arm,
    PairedRatio,
    interleave,
    matmul_peak,
    paired_ratio,
    step_flops,
    synchronize,
)
from siamlab.bench.reference import ReferenceStep, reference_loss
from siamlab.config.study import RunSpec
from siamlab.data.batched import with_batched_views
from siamlab.data.build import DataBundle, build_datasets
from siamlab.data.resident import with_resident_views
from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.probe import EvalFeatures
from siamlab.objectives import simsiam_loss
from siamlab.reporting.assemble import build_monitor
from siamlab.results.recorder import Recorder
from siamlab.run.assemble import RunLength, build_model, build_step
from siamlab.train.device import configure_torch, select_device
from siamlab.train.distributed import DistInfo
from siamlab.train.loop import Batch, Trainer
from siamlab.train.optim import create_optimizer
from siamlab.train.speed import bf16_supported, resolve_speed, speed_label
from siamlab.train.views import EpochView, StepView

SPEED_DEFAULTS = {"precision": "fp32", "channels_last": False, "compile": False}
BASELINE = "siamlab fp32 (base)"  # the arm without speed options, when the config has some


@dataclass
class BenchReport:
    """Everything ``siamlab bench`` prints."""

    arms: list[Arm]
    loader: LoaderRate  # the run's own batches (a DataLoader, or device-resident)
    peak_fp32: float
    peak_bf16: float
    threads: int
    device: str
    notes: list[str] = field(default_factory=list)
    other_loader: LoaderRate | None = None  # batched views: the other of the two paths
    steps_per_epoch: int = 0  # the run's; siamlab's arms train through real epochs
    epochs_covered: int = 0  # the epochs the timed and warm-up steps reached (1-based last)
    run_epochs: int = 0  # the run's epochs

    def arm(self, prefix: str) -> Arm | None:
        """The first arm whose name starts with ``prefix``."""
        return next((a for a in self.arms if a.name.startswith(prefix)), None)

    @property
    def ratio(self) -> float:
        """The img/s of siamlab's step over the reference's (target at fp32: >= 0.97)."""
        return self.arms[0].rate / self.arms[-1].rate

    @property
    def paired(self) -> PairedRatio:
        """:attr:`ratio` round by round: its median and an interval (the machine's noise)."""
        return paired_ratio(self.arms[0].block_rates, self.arms[-1].block_rates)

    @property
    def diag_share(self) -> float:
        """Share of siamlab's step time spent in the step diagnostics (hooks and sinks)."""
        return self.arms[0].diag_share

    @property
    def diag_part_shares(self) -> list[tuple[str, float]]:
        """Each step hook's and sink's share of siamlab's step time, largest first.

        The rest of :attr:`diag_share` (summaries, the monitor's dispatch) is "other".
        """
        arm = self.arms[0]
        parts = sorted(arm.diag_parts.items(), key=lambda kv: -kv[1])
        other = arm.diag_seconds - sum(arm.diag_parts.values())
        return [(k, v / arm.seconds) for k, v in [*parts, ("other", other)]]

    @property
    def speedup(self) -> float | None:
        """The speed options' gain: siamlab over its fp32 baseline arm (None without one)."""
        base = self.base
        return None if base is None else self.arms[0].rate / base.rate

    @property
    def paired_speedup(self) -> PairedRatio | None:
        """:attr:`speedup` round by round (None without a baseline arm)."""
        base = self.base
        return None if base is None else paired_ratio(self.arms[0].block_rates, base.block_rates)

    @property
    def base(self) -> Arm | None:
        """The fp32 baseline arm of siamlab, present when the config sets a speed option."""
        return self.arm(BASELINE)


class _StepsOnly:
    """Forwards the step callbacks to the monitor, timed; drops the (epoch-end) rest."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.arm: Arm | None = None

    def on_step_end(self, view: StepView) -> None:
        device = view.output.z1.device
        synchronize(device)  # the step's queued backward and update are not the hooks'
        t0 = time.perf_counter()
        self.monitor.on_step_end(view)
        synchronize(device)
        if self.arm is not None:
            self.arm.diag_seconds += time.perf_counter() - t0

    def on_epoch_end(self, view: EpochView) -> None:
        pass


class _NoSaves:
    """The bench writes no checkpoints."""

    def after_step(self, step: int) -> None:
        pass

    def after_epoch(self, epoch: int, step: int, is_last: bool) -> None:
        pass


def in_folder(spec: RunSpec, root: str | Path) -> RunSpec:
    """``spec`` writing under ``root`` (a bench's temporary folder)."""
    out = spec.config.output.model_copy(update={"root": str(root)})
    return dataclasses.replace(spec, config=spec.config.model_copy(update={"output": out}))


def steps_per_epoch(data: DataBundle, batch: int) -> int:
    """Full batches in an epoch of one process (the bench's arms train alone)."""
    return max(len(data.train_eval) // batch, 1)


def _siamlab_arm(
    spec: RunSpec,
    data: DataBundle,
    device: torch.device,
    pool: list[Batch],
    name: str,
    make_optimizer: Callable[..., torch.optim.Optimizer] = create_optimizer,
) -> tuple[Arm, torch.nn.Module, Monitor]:
    """The Trainer of ``spec`` on the pooled batches, built from build_run's pieces.

    ``make_optimizer``: :func:`create_optimizer` or another with its signature (a
    benchmark's variant of it, benchmarks/fused_sgd.py).
    """
    cfg, alone = spec.config, DistInfo()
    batch = cfg.train.batch_size
    spe = steps_per_epoch(data, batch)
    length = RunLength(spe, cfg.train.epochs, spe * cfg.train.epochs)
    model = build_model(cfg, spec.seed, device, alone)
    optimizer = make_optimizer(model, cfg.optim, batch)
    features = EvalFeatures(model, device)
    monitor = build_monitor(
        spec, features, data, alone, spec.directory(), Recorder(), length, 0, False, False
    )
    callbacks = _StepsOnly(monitor)

    def batches(epoch: int, start: int) -> Iterator[Batch]:
        first = epoch * spe + start  # the pool cycles over the global step
        return (pool[(first + j) % len(pool)] for j in range(spe - start))

    # the run's epochs, so that work scheduled by epoch (F of the predictor alignment is
    # kept only in the epochs it is reported) costs what it costs in the run; the epoch-end
    # diagnostics are dropped (_StepsOnly) and there are as many epochs as the blocks take
    trainer = Trainer(
        sgd_step=build_step(cfg, model, optimizer, device, length),
        batches=batches,
        steps_per_epoch=spe,
        epochs=2**62,
        monitor=callbacks,
        saver=_NoSaves(),
        channels_last=cfg.train.channels_last is True,
    )
    done = [0]

    def run_block(n: int) -> None:
        done[0] = trainer.fit(done[0], done[0] + n)

    callbacks.arm = Arm(name, run_block, batch, diag_parts=time_parts(monitor))
    return callbacks.arm, model, monitor


def _reference_arm(spec: RunSpec, device: torch.device, pool: list[Batch]) -> tuple[Arm, Any]:
    torch.manual_seed(spec.seed)
    step = ReferenceStep(spec.config, device)
    cursor = itertools.cycle(pool)

    def run_block(n: int) -> None:
        for _ in range(n):
            x1, x2, _, _ = next(cursor)
            step(x1, x2)

    return Arm("reference", run_block, spec.config.train.batch_size), step.model


def prepare(
    spec: RunSpec, loader_batches: int = 8
) -> tuple[RunSpec, torch.device, DataBundle, LoaderRate, list[Batch]]:
    """Torch, device and data as a run of ``spec`` has them, and batches to time steps on.

    Returns:
        ``spec`` with its precision / channels_last "auto" resolved, the device, the
        datasets (batched / device-resident views as the config says), the loader's
        rate over ``loader_batches`` batches and 4 of its batches (the arms' pool).
    """
    configure_torch(spec.config.train)
    device = select_device(spec.config.train.device)
    cfg = spec.config.model_copy(update={"train": resolve_speed(spec.config.train, device)})
    spec = dataclasses.replace(spec, config=cfg)
    pairs = 2 if cfg.objective.symmetry == "asymmetric_2x" else 1
    data = build_datasets(cfg.data, spec.seed, pairs)
    data = with_batched_views(data, cfg.data, spec.seed, pairs)  # as data.augment_batched says
    data = with_resident_views(data, cfg.data, device)  # as data.device_resident says
    loader, pool = time_loader(data, spec, device, loader_batches, keep=4)
    return spec, device, data, loader, pool


def run_bench(
    spec: RunSpec,
    steps: int = 20,
    block: int = 5,
    warmup: int = 1,
    loader_batches: int = 8,
    peak_n: int = 2048,
) -> BenchReport:
    """Benchmark ``spec``'s training step against the reference loop (see the module doc).

    Args:
        spec: the run (its output root is replaced by a temporary folder).
        steps: timed steps per arm.
        block: steps per interleaved block.
        warmup: untimed steps per arm first.
        loader_batches: batches the loader is timed on (at most an epoch).
        peak_n: side of the matmul that measures the peak FLOP/s.
    """
    spec, device, data, loader, pool = prepare(spec, loader_batches)
    cfg = spec.config
    notes = []
    if cfg.objective.eta.mode != "off":
        notes.append("objective.eta is not benchmarked: the SimSiam step is timed")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if device.type == "cpu" and torch.get_num_threads() > 1 and load > cores:
        notes.append(
            f"load average {load:.1f} on {cores} cores with {torch.get_num_threads()} torch "
            "threads: OpenMP threads spin while their siblings wait for a core, which can slow "
            "both loops many times over; try --set train.threads=1 or OMP_WAIT_POLICY=PASSIVE"
        )
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        notes.append(
            "the fp32 peak is a matmul without TF32 (torch's default for matmuls), but cuDNN "
            "runs fp32 convolutions in TF32 (its default): a conv net's fp32 share of it can "
            "pass 100%"
        )
    other = other_path(data, device)
    other_loader = None if other is None else time_loader(other, spec, device, loader_batches, 0)[0]
    spe = steps_per_epoch(data, cfg.train.batch_size)
    with tempfile.TemporaryDirectory(prefix="siamlab-bench-") as tmp:
        spec = in_folder(spec, tmp)
        specs = [spec]
        if any(getattr(cfg.train, k) != v for k, v in SPEED_DEFAULTS.items()):
            fp32 = cfg.train.model_copy(update=SPEED_DEFAULTS)
            base = spec.config.model_copy(update={"train": fp32})
            specs.append(dataclasses.replace(spec, variant=f"{spec.variant}-fp32", config=base))
        arms, monitors = [], []
        x1, x2 = (t.to(device) for t in pool[0][:2])
        for s in specs:
            name = BASELINE if s is not spec else f"siamlab {speed_label(s.config.train)}"
            arm, model, monitor = _siamlab_arm(s, data, device, pool, name)
            arm.flops = step_flops(
                model, lambda m, a, b: simsiam_loss(m(a, b), cfg.objective), x1, x2
            )
            arms.append(arm)
            monitors.append(monitor)
        ref, ref_model = _reference_arm(spec, device, pool)
        ref.flops = step_flops(ref_model, reference_loss, x1, x2)
        arms.append(ref)
        try:
            interleave(arms, steps, block, device, warmup)
        finally:
            for m in monitors:
                m.close()
    bf16 = matmul_peak(device, torch.bfloat16, peak_n) if bf16_supported(device) else float("nan")
    return BenchReport(
        arms=arms,
        loader=loader,
        peak_fp32=matmul_peak(device, torch.float32, peak_n),
        peak_bf16=bf16,
        threads=torch.get_num_threads(),
        device=str(device),
        notes=notes,
        other_loader=other_loader,
        steps_per_epoch=spe,
        epochs_covered=-(-(warmup + steps) // spe),
        run_epochs=cfg.train.epochs,
    )
