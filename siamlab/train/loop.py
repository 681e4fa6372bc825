"""The training loop: epochs of SGD steps over two-view batches. It knows nothing of metrics.

The step itself is :class:`~siamlab.train.step.SimSiamStep`. Whatever watches training
(diagnostics, results, progress) implements :class:`Callbacks` and receives a read-only
:class:`~siamlab.train.views.StepView` / :class:`~siamlab.train.views.EpochView`
(detached tensors, no model); a :class:`Saver` checkpoints after it. Training stops
early in two ways, both as exceptions carrying the last step: :class:`Preempted` when
``should_stop`` (a signal) asks between steps, :class:`StoppedEarly` when
``stop_after_epoch`` (a watcher's judgement, e.g. the collapse verdict) asks at an
epoch's end; the caller checkpoints and records why.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch

from siamlab.train.distributed import world_size
from siamlab.train.speed import to_device
from siamlab.train.step import SimSiamStep
from siamlab.train.views import EpochView, StepView, step_view

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # views, labels, indices


class Preempted(Exception):
    """A stop was requested (SIGTERM/SIGINT); training stopped after ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped on request after step {step}")
        self.step = step


class StoppedEarly(Exception):
    """``stop_after_epoch`` ended training after ``epoch`` (its last ``step``), before the last.

    Raised after the epoch's callbacks and instead of the saver's epoch-end save: the
    caller saves once, with its own status.
    """

    def __init__(self, step: int, epoch: int) -> None:
        super().__init__(f"stopped early after epoch {epoch} (step {step})")
        self.step, self.epoch = step, epoch


class Callbacks(Protocol):
    """Receives views of training; may not change it."""

    def on_step_end(self, view: StepView) -> None:
        """Called after every SGD step."""

    def on_epoch_end(self, view: EpochView) -> None:
        """Called after every epoch."""


class Saver(Protocol):
    """Checkpoints training when its schedule says so (after the monitor has run)."""

    def after_step(self, step: int) -> None:
        """Called after the monitor saw 1-based ``step``."""

    def after_epoch(self, epoch: int, step: int, is_last: bool) -> None:
        """Called after the monitor saw the end of 1-based ``epoch``."""


@dataclass(frozen=True)
class Trainer:
    """Runs epochs of SGD steps on a Siamese model.

    After each step and each epoch it calls the monitor, then the saver, in that order.

    Attributes:
        sgd_step: one SGD step (paper Algorithm 1).
        batches: ``batches(epoch, start_batch)`` iterates that epoch's batches from
            ``start_batch`` on (mid-epoch resume).
        steps_per_epoch: batches per epoch.
        epochs: total epochs.
        monitor: observes every step and epoch (diagnostics, results, progress).
        saver: checkpoints after the monitor (so a checkpoint holds its values).
        should_stop: polled between steps; True stops training with :class:`Preempted`
            (deferred to after the epoch's callbacks when a step ends an epoch).
        stop_after_epoch: polled after each epoch's callbacks except the last one's;
            True ends training there with :class:`StoppedEarly` (no saver call).
        channels_last: move input batches to the device in channels_last layout.
    """

    sgd_step: SimSiamStep
    batches: Callable[[int, int], Iterable[Batch]]
    steps_per_epoch: int
    epochs: int
    monitor: Callbacks
    saver: Saver
    should_stop: Callable[[], bool] = lambda: False
    stop_after_epoch: Callable[[], bool] = lambda: False
    channels_last: bool = False

    def fit(self, start_step: int, end_step: int) -> int:
        """Train from global step ``start_step`` (0 or a checkpoint's) up to ``end_step``.

        Returns:
            The last step taken.

        Raises:
            Preempted: ``should_stop`` asked for a stop.
            StoppedEarly: ``stop_after_epoch`` asked for a stop.
        """
        step, model, device = start_step, self.sgd_step.model, self.sgd_step.device
        start_epoch, skip = divmod(start_step, self.steps_per_epoch)
        processes = world_size()  # each takes an equal share of every batch
        for epoch in range(start_epoch, self.epochs):
            t0, images = time.perf_counter(), 0
            model.train()
            for x1, x2, _, idx in self.batches(epoch, skip if epoch == start_epoch else 0):
                if step >= end_step:
                    break
                v1, v2 = (to_device(x, device, self.channels_last) for x in (x1, x2))
                done = self.sgd_step(v1, v2, idx, step, epoch)
                step += 1
                images += x1.shape[0] * processes  # the global batch's
                self.monitor.on_step_end(
                    step_view(
                        step,
                        epoch,
                        done.loss,
                        done.lr,
                        done.output,
                        x1.shape[0],
                        model,
                        done.target_stats,
                        done.unit_rows,
                    )
                )
                self.saver.after_step(step)
                if step % self.steps_per_epoch and self.should_stop():
                    raise Preempted(step)
            is_last = step >= end_step or epoch + 1 == self.epochs
            seconds = time.perf_counter() - t0
            self.monitor.on_epoch_end(EpochView(epoch + 1, step, seconds, images, is_last))
            if not is_last and self.stop_after_epoch():
                raise StoppedEarly(step, epoch + 1)
            self.saver.after_epoch(epoch + 1, step, is_last)
            if step >= end_step:
                break
            if self.should_stop():
                raise Preempted(step)
        return step
