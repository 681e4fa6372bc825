r"""Training with the data in the loop: the batched DataLoader vs device-resident batches.

``siamlab bench`` times the step on pooled batches and each batch path alone; this script
times what a run does, whole epochs of the real :class:`~siamlab.train.loop.Trainer` that
fetch their own batches, for these arms, interleaved in one process (order rotated per
round, one untimed epoch each first):

* ``worker``: the batched DataLoader with the quick profile's one worker, which
  torch starts anew every epoch (``persistent_workers`` is off by default);
* ``persistent``: the same worker kept across epochs;
* ``inline``: the DataLoader without a worker (batches made in the training process);
* ``resident``: ``data.device_resident=true``, no DataLoader.

Per arm it prints img/s including data and the wait for each epoch's first batch (iterator
start: a worker's start plus its first batch). The step diagnostics are left out (the same
in every arm); every arm trains the same batches from the same initial weights.

    python benchmarks/device_data.py --set train.threads=1        # quick: ~1-2 min, 2 cores
    python benchmarks/device_data.py --profile cifar10 --set data.dataset=npz \\
        --set data.root=../shared/data --set train.batch_size=64 --epochs-per-block 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from siamlab.config.study import StudyFile, expand_study
from siamlab.data.batched import with_batched_views
from siamlab.data.build import build_datasets
from siamlab.data.resident import training_batches, with_resident_views
from siamlab.data.views import EpochSampler
from siamlab.run.assemble import RunLength, build_model, build_step
from siamlab.train.device import configure_torch, select_device
from siamlab.train.distributed import DistInfo
from siamlab.train.loop import Trainer
from siamlab.train.optim import create_optimizer
from siamlab.train.speed import resolve_speed
from siamlab.train.views import EpochView, StepView

ARMS = {  # name: (what it is, its --set keys)
    "worker": ("loader, 1 worker (respawned per epoch)", ["data.num_workers=1"]),
    "persistent": (
        "loader, 1 persistent worker",
        ["data.num_workers=1", "data.persistent_workers=true"],
    ),
    "inline": ("loader, no worker", ["data.num_workers=0"]),
    "resident": ("device-resident, no loader", ["data.device_resident=true"]),
}


class _Quiet:
    """No monitor and no saver: the arms differ in their data path only."""

    def on_step_end(self, view: StepView) -> None:
        pass

    def on_epoch_end(self, view: EpochView) -> None:
        pass

    def after_step(self, step: int) -> None:
        pass

    def after_epoch(self, epoch: int, step: int, is_last: bool) -> None:
        pass


@dataclass
class DataArm:
    """One data path's trainer and its timings."""

    name: str
    trainer: Trainer
    batch: int
    device: torch.device
    step: int = 0
    seconds: float = 0.0
    images: int = 0
    waits: list[float] = field(default_factory=list)  # per epoch: iter() to first batch
    block_rates: list[float] = field(default_factory=list)  # img/s of every timed block
    timing: bool = False

    def run(self, epochs: int) -> None:
        """Train ``epochs`` whole epochs (timed once ``timing`` is set)."""
        n = epochs * self.trainer.steps_per_epoch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        self.step = self.trainer.fit(self.step, self.step + n)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self.timing:
            dt = time.perf_counter() - t0
            self.seconds += dt
            self.images += n * self.batch
            self.block_rates.append(n * self.batch / dt)


def _first_batch_timed(source: Iterable[Any], arm: DataArm) -> Iterator[Any]:
    """Iterate ``source``, recording the wait for its first batch."""
    t0 = time.perf_counter()
    it = iter(source)
    first = next(it, None)
    if arm.timing:
        arm.waits.append(time.perf_counter() - t0)
    if first is None:
        return
    yield first
    yield from it


def build_arm(name: str, profile: str, sets: list[str]) -> DataArm:
    """The Trainer of the profile's config with one data path."""
    spec = expand_study(StudyFile(name="device_data"), profile, sets)[0]
    configure_torch(spec.config.train)
    device = select_device(spec.config.train.device)
    cfg = spec.config.model_copy(update={"train": resolve_speed(spec.config.train, device)})
    data = build_datasets(cfg.data, spec.seed)
    data = with_resident_views(with_batched_views(data, cfg.data, spec.seed, 1), cfg.data, device)
    batch = cfg.train.batch_size
    sampler = EpochSampler(len(data.train_eval), batch, spec.seed)
    source = training_batches(cfg.data, data.train_views, sampler, device)
    spe = sampler.num_batches
    length = RunLength(spe, 10**6, spe * 10**6)  # an endless run: the lr hardly moves
    model = build_model(cfg, spec.seed, device, DistInfo())
    optimizer = create_optimizer(model, cfg.optim, batch)
    arm: DataArm

    def batches(epoch: int, start: int) -> Iterator[Any]:
        data.train_views.set_epoch(epoch)
        sampler.set_epoch(epoch, start)
        return _first_batch_timed(source, arm)

    quiet = _Quiet()
    trainer = Trainer(
        sgd_step=build_step(cfg, model, optimizer, device, length),
        batches=batches,
        steps_per_epoch=spe,
        epochs=10**6,
        monitor=quiet,
        saver=quiet,
        channels_last=cfg.train.channels_last is True,
    )
    arm = DataArm(name, trainer, batch, device)
    return arm


def main() -> None:
    """Parse the arguments, run the arms interleaved, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds over the arms")
    ap.add_argument("--epochs-per-block", type=int, default=2)
    ap.add_argument("--arms", default=",".join(ARMS), help="arms, comma-separated")
    args = ap.parse_args()
    base = ["data.augment_batched=true", *args.sets]
    arms = [build_arm(ARMS[a][0], args.profile, [*base, *ARMS[a][1]]) for a in args.arms.split(",")]
    for arm in arms:  # warm-up: allocations, kernel choice, the first worker start
        arm.run(1)
        arm.timing = True
    for r in range(args.rounds):
        for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
            arm.run(args.epochs_per_block)
    dev = arms[0].device
    print(
        f"{args.profile} profile, {dev}, {torch.get_num_threads()} torch threads, batch "
        f"{arms[0].batch}, {arms[0].trainer.steps_per_epoch} steps per epoch; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    base_rate = arms[0].images / arms[0].seconds
    head = f"{'arm':40} {'img/s (step + data)':>20} {'blocks min-max':>15} {'vs first':>9}"
    print(f"{head} {'first-batch wait':>17}")
    for arm in arms:
        rate = arm.images / arm.seconds
        spread = f"{min(arm.block_rates):,.0f}-{max(arm.block_rates):,.0f}"
        wait = statistics.median(arm.waits) * 1e3
        print(f"{arm.name:40} {rate:20,.0f} {spread:>15} {rate / base_rate:8.2f}x {wait:14.0f} ms")


if __name__ == "__main__":
    main()
    # A persistent worker that outlives its loader here (seen after Trainer epochs; the
    # loader's shutdown gives up after its 5 s join) ignores SIGTERM (siamlab.preemption),
    # so the interpreter's exit, which terminates and joins it, would wait for ever. Leave
    # without that join: the worker's watchdog ends it once its parent is gone.
    sys.stdout.flush()
    os._exit(0)
