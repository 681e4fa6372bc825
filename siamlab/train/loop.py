"""The training loop: SGD steps over two-view batches. It knows nothing of metrics.

Whatever wants to watch training (diagnostics, logging, checkpointing) implements
:class:`Callbacks` and receives a read-only :class:`~siamlab.train.views.StepView` /
:class:`~siamlab.train.views.EpochView` (detached tensors, no model).
"""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from siamlab.eta.provider import TargetProvider
from siamlab.models.siamese import SiameseOutput
from siamlab.train.speed import autocast, to_device, to_float
from siamlab.train.views import EpochView, StepView, step_view

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # views, labels, indices


class Preempted(Exception):
    """A stop was requested (SIGTERM/SIGINT); training stopped after ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped on request after step {step}")
        self.step = step


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the step it happened at is ``step``."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step


class Callbacks(Protocol):
    """Receives views of training; may not change it."""

    def on_step_end(self, view: StepView) -> None:
        """Called after every SGD step."""

    def on_epoch_end(self, view: EpochView) -> None:
        """Called after every epoch."""


LossFn = Callable[[SiameseOutput], torch.Tensor]
LrFn = Callable[[int, int], float]  # (0-based step, 0-based epoch) -> lr actually set


@dataclass
class Trainer:
    """Runs epochs of SGD on a Siamese model.

    Attributes:
        model: the network (already on ``device``).
        loss_fn: SiameseOutput -> scalar loss.
        optimizer: its optimiser.
        set_lr: sets the lr for a step and returns it.
        batches: ``batches(epoch, start_batch)`` iterates that epoch's batches from
            ``start_batch`` on (mid-epoch resume).
        steps_per_epoch: batches per epoch.
        epochs: total epochs.
        device: where tensors go.
        callbacks: observers of training.
        max_steps: stop after this many global steps (None = no cap).
        after_step: called with the 1-based step after each optimiser step (e.g. the
            momentum target's EMA update).
        targets: replaces the targets by eta (paper Sec. 5); None = SimSiam's own z.
        should_stop: polled between steps; True stops training with :class:`Preempted`
            (deferred to after the epoch's callbacks when a step ends an epoch).
        forward: the module that runs training forwards (a DistributedDataParallel
            wrapper of ``model``); None = ``model``.
        reduce_loss: turns this process's loss into the global batch's (mean over
            processes); identity alone.
        autocast_dtype: run the forward pass under autocast to this dtype (bf16); the
            outputs are cast back to fp32 before the loss. None = fp32.
        channels_last: move input batches to the device in channels_last layout.
    """

    model: nn.Module
    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    set_lr: LrFn
    batches: Callable[[int, int], Iterable[Batch]]
    steps_per_epoch: int
    epochs: int
    device: torch.device
    callbacks: Callbacks
    max_steps: int | None = None
    after_step: Callable[[int], None] | None = None
    targets: TargetProvider | None = None
    should_stop: Callable[[], bool] = lambda: False
    forward: nn.Module | None = None
    reduce_loss: Callable[[float], float] = lambda value: value
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    def fit(self, start_step: int) -> int:
        """Train from global step ``start_step`` (0 or a checkpoint's); return the last step."""
        step = start_step
        start_epoch, skip = divmod(start_step, self.steps_per_epoch)
        for epoch in range(start_epoch, self.epochs):
            t0, images = time.perf_counter(), 0
            self.model.train()
            for x1, x2, _, idx in self.batches(epoch, skip if epoch == start_epoch else 0):
                if self.max_steps is not None and step >= self.max_steps:
                    break
                lr = self.set_lr(step, epoch)
                if self.targets is not None:
                    self.targets.before_step(step)
                out, loss, stats = self._step(
                    to_device(x1, self.device, self.channels_last),
                    to_device(x2, self.device, self.channels_last),
                    idx,
                    step,
                )
                step += 1
                if self.after_step is not None:
                    self.after_step(step)
                images += x1.shape[0]
                self.callbacks.on_step_end(
                    step_view(step, epoch, loss, lr, out, x1.shape[0], self.model, stats)
                )
                if step % self.steps_per_epoch and self.should_stop():
                    raise Preempted(step)
            done = self.max_steps is not None and step >= self.max_steps
            is_last = done or epoch + 1 == self.epochs
            seconds = time.perf_counter() - t0
            self.callbacks.on_epoch_end(
                EpochView(epoch + 1, step, seconds, images, is_last)
            )
            if done:
                break
            if self.should_stop():
                raise Preempted(step)
        return step

    def _step(
        self, x1: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, step: int
    ) -> tuple[SiameseOutput, float, dict[str, float]]:
        with autocast(self.device, self.autocast_dtype):
            out = (self.model if self.forward is None else self.forward)(x1, x2)
            if self.autocast_dtype is not None:
                out = to_float(out)  # loss, targets and diagnostics in fp32
            stats: dict[str, float] = {}
            if self.targets is not None:
                out, stats = self.targets.apply(out, idx, step)
            loss = self.loss_fn(out)
        value = self.reduce_loss(float(loss.detach()))
        if not math.isfinite(value):
            raise DivergedError(step + 1, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        t1, t2 = (None if t is None else t.detach() for t in (out.t1, out.t2))
        h1, h2, z1, z2, p1, p2 = (t.detach() for t in out[:6])
        detached = SiameseOutput(h1, h2, z1, z2, p1, p2, t1, t2)
        return detached, value, stats
