"""One SGD step of SimSiam, top to bottom as the paper's Algorithm 1 (Sec. 3).

Two augmented views -> encoder f and predictor h -> targets with stop-gradient ->
the symmetric loss (Eq. 4) -> backward -> the optimiser step, then the momentum
target's EMA and (DirectPred / DirectCopy) the predictor set from the step's z.
Everything else a run needs (data, schedules' values, the eta source) is handed in;
nothing here records metrics or writes files.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from siamlab.eta.provider import TargetProvider
from siamlab.models.siamese import SiameseNet, SiameseOutput
from siamlab.objectives import ObjectiveConfig, simsiam_loss_terms
from siamlab.train.speed import autocast, to_float


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the step it happened at is ``step``."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step


@dataclass(frozen=True)
class StepResult:
    """What one step gives back: its detached fp32 output, the global loss, the lr."""

    output: SiameseOutput  # targets t1, t2 replaced by eta when there is an eta source
    loss: float  # the global batch's loss (mean over processes)
    lr: float  # the encoder's lr the step used
    target_stats: dict[str, float]  # from the eta source (empty without one)
    unit_rows: dict[str, torch.Tensor] = field(default_factory=dict)  # the loss's, detached


@dataclass(frozen=True)
class SimSiamStep:
    """Everything one SGD step needs, and the step itself (:meth:`__call__`).

    Attributes:
        model: the Siamese network (it owns the momentum target's EMA update and a set
            predictor's update from the step's z).
        forward: the module that runs the training forward (``model``, its DDP wrapper
            or its compiled form; they share the weights).
        optimizer: SGD or LARS over ``model``'s trainable parameters.
        objective: similarity, symmetry and stop-gradient of the loss.
        set_lr: sets the lr of (0-based step, 0-based epoch) and returns it.
        momentum: the momentum target's m after a 1-based step (ignored without one).
        device: where the batch is (for autocast).
        eta: the eta source of paper Sec. 5; None = SimSiam's own targets.
        autocast_dtype: forward under autocast to this dtype (bf16); None = fp32.
        reduce_loss: this process's loss -> the global batch's (identity alone).
    """

    model: SiameseNet
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    objective: ObjectiveConfig
    set_lr: Callable[[int, int], float]
    momentum: Callable[[int], float]
    device: torch.device
    eta: TargetProvider | None = None
    autocast_dtype: torch.dtype | None = None
    reduce_loss: Callable[[float], float] = float

    def __call__(
        self, x1: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, step: int, epoch: int
    ) -> StepResult:
        """Train on views x1, x2 (B, 3, H, W) of images ``idx`` (B,) at 0-based ``step``.

        Raises:
            DivergedError: the loss is NaN or infinite (nothing is updated).
        """
        lr = self.set_lr(step, epoch)
        stats: dict[str, float] = {}
        if self.eta is not None:
            # cached eta: a new window computes its targets, in the training forward's
            # precision (k = 1 is SimSiam exactly under bf16 too). Its own autocast
            # region: leaving it drops the weight casts made under no_grad, which the
            # training forward must not reuse (in torch before the fix of pytorch issue
            # 112583 such a cached cast has no graph and the weight gets no gradient).
            with autocast(self.device, self.autocast_dtype):
                self.eta.before_step(step)
        with autocast(self.device, self.autocast_dtype):
            out = self.forward(x1, x2)  # h1, h2 (B, C); z1, z2, p1, p2 (B, d)
            if self.autocast_dtype is not None:
                out = to_float(out)  # the loss, targets and diagnostics in fp32
            if self.eta is not None:
                out, stats = self.eta.apply(out, idx, step)  # t1, t2 <- eta (B, d)
            # targets: t = z (SimSiam), the momentum target's output (m > 0) or eta;
            # L = 1/2 D(p1, stopgrad(t2)) + 1/2 D(p2, stopgrad(t1))   (B, d) -> ()
            loss, unit_rows = simsiam_loss_terms(out, self.objective)
        value = self.reduce_loss(float(loss.detach()))
        if not math.isfinite(value):
            raise DivergedError(step + 1, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()  # update f and h
        self.model.update_target(self.momentum(step + 1))  # xi <- m xi + (1 - m) theta
        self.model.update_predictor(out.z1, out.z2, step + 1)  # DirectPred: F, then W_p
        rows = {name: row.detach() for name, row in unit_rows.items()}  # (B, d) each
        return StepResult(detached(out), value, lr, stats, rows)


def detached(out: SiameseOutput) -> SiameseOutput:
    """``out`` with every tensor detached (Nones kept): what observers of a step get."""
    return SiameseOutput._make(None if t is None else t.detach() for t in out)
