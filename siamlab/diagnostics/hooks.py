"""The diagnostics contract: step hooks, epoch hooks and summaries.

A **step hook** turns a :class:`~siamlab.train.views.StepView` (detached outputs, loss,
lr, gradients) into named values; an **epoch hook** turns an
:class:`~siamlab.train.views.EpochView` and a :class:`~siamlab.diagnostics.probe.ProbeCache`
(eval-mode embeddings of fixed probe sets) into named values. Neither sees the model or
the optimiser. A hook that needs both (the loss hook's per-epoch mean) implements both.
A **summary** derives values from what all hooks returned (the verdict).

Each hook declares its schedule (``step_every``: every N steps; ``epoch_every``: every N
epochs plus the first and the last, :func:`~siamlab.diagnostics.config.epoch_due`) and
the :class:`~siamlab.diagnostics.monitor.Monitor` calls it only when due. Each declares
the result variables it may return (``variables``) and how it is built from the run's
:class:`HookContext` (``build``, None = not applicable to this run). A new diagnostic is
one file with such a class plus one line in :mod:`siamlab.diagnostics.registry`.

An epoch hook that reads the backbone's stage outputs (``probes.stages(name)``) names
that probe set in a class attribute ``stage_probe``; the monitor then tells the
ProbeCache before any hook runs, and the first pass over a set holding those rows (the
kNN bank) records them (:meth:`~siamlab.diagnostics.probe.ProbeCache.expect_stages`).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from siamlab.diagnostics.config import DiagnosticsConfig, EpochSchedule
from siamlab.diagnostics.probe import ProbeCache
from siamlab.results.schema import ResultVar
from siamlab.train.views import EpochView, StepView

Value = float | np.ndarray | str
Values = dict[str, Value]


@dataclass(frozen=True)
class HookContext:
    """What hooks may be built from (never the model itself).

    Attributes:
        cfg: the diagnostics config.
        epochs: planned epochs of the run (resolves ``"auto"`` epoch schedules).
        num_classes: classes of the data (kNN monitor).
        has_targets: the run trains towards eta targets (paper Sec. 5).
        predictor_has_parameters: the predictor is not an identity.
        last_epoch: the 1-based epoch the run really ends in (the trainer's
            ``EpochView.is_last``): below ``epochs`` where ``train.max_steps`` cuts the
            run; 0 = ``epochs``.
    """

    cfg: DiagnosticsConfig
    epochs: int
    num_classes: int
    has_targets: bool
    predictor_has_parameters: bool
    last_epoch: int = 0

    @property
    def final_epoch(self) -> int:
        """The run's last epoch: ``last_epoch``, or ``epochs`` where that is not given."""
        return self.last_epoch or self.epochs

    def every(self, schedule: EpochSchedule) -> int:
        """An epoch schedule of ``cfg`` resolved for this run."""
        return self.cfg.every_epochs(schedule, self.epochs)


@runtime_checkable
class StepHook(Protocol):
    """Values of an SGD step, every ``step_every`` steps."""

    variables: ClassVar[tuple[ResultVar, ...]]
    step_every: int

    def on_step(self, view: StepView) -> Values:
        """Values for this step (called only when due)."""
        ...


@runtime_checkable
class EpochHook(Protocol):
    """Values of an epoch from eval-mode probe embeddings, when due."""

    variables: ClassVar[tuple[ResultVar, ...]]
    epoch_every: int

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> Values:
        """Values for this epoch (called only when due)."""
        ...


@runtime_checkable
class Summary(Protocol):
    """Derives values from what all hooks returned for a step or an epoch (the verdict)."""

    variables: ClassVar[tuple[ResultVar, ...]]

    def summarise(self, scope: str, index: int, values: Mapping[str, Value]) -> Values:
        """Extra values for ``scope`` ("step" or "epoch") at 1-based step or epoch ``index``."""
        ...


Hook = StepHook | EpochHook | Summary


class HookClass(Protocol):
    """A registered hook class: its variables and how to build it for a run."""

    variables: ClassVar[tuple[ResultVar, ...]]

    @classmethod
    def build(cls, ctx: HookContext) -> Hook | None:
        """The hook for a run, or None where it does not apply."""
        ...
