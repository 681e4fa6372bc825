"""The training loss and lr every step; the epoch's mean loss and throughput at its end."""

from dataclasses import dataclass
from typing import Any, ClassVar

from siamlab.diagnostics.hooks import HookContext, Values
from siamlab.diagnostics.probe import ProbeCache
from siamlab.results.schema import ResultVar
from siamlab.train.views import EpochView, StepView


@dataclass
class LossHook:
    """Loss and lr every step (a step hook); the epoch's mean loss (an epoch hook).

    Both parts run every step / every epoch: the epoch part consumes the running sum the
    step part keeps.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "loss",
            ("step",),
            "training loss (paper Eq. 4 with the configured similarity and symmetry)",
            "1",
        ),
        ResultVar("lr", ("step",), "learning rate of the encoder", "1"),
        ResultVar("epoch_loss", ("epoch",), "mean training loss over the epoch", "1"),
        ResultVar(
            "images_per_second", ("epoch",), "training images per second, all processes", "images/s"
        ),
    )
    step_every: int = 1
    epoch_every: int = 1
    _sum: float = 0.0
    _count: int = 0

    @classmethod
    def build(cls, ctx: HookContext) -> "LossHook":
        """Every step and every epoch."""
        return cls()

    def on_step(self, view: StepView) -> Values:
        self._sum, self._count = self._sum + view.loss, self._count + 1
        return {"loss": view.loss, "lr": view.lr}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> Values:
        mean = self._sum / max(self._count, 1)
        self._sum, self._count = 0.0, 0
        return {"epoch_loss": mean, "images_per_second": view.images / max(view.seconds, 1e-9)}

    def state_dict(self) -> dict[str, Any]:
        """The running sum of the epoch's losses (for a mid-epoch checkpoint)."""
        return {"sum": self._sum, "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._sum, self._count = float(state["sum"]), int(state["count"])
