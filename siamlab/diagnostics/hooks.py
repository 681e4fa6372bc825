"""Diagnostic hooks: each turns a read-only view of training into named values.

A hook has its own schedule. Step hooks see the :class:`~siamlab.train.loop.StepView`
(the batch's z/p/h, loss, lr); epoch hooks see the epoch number and a
:class:`ProbeCache` of eval-mode embeddings, never the optimiser. Values must be
declared in :mod:`siamlab.results.schema`. Adding a diagnostic = one class + one
line in ``create_hooks``.
"""

from dataclasses import dataclass
from typing import Any, Protocol

from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.knn import knn_accuracy
from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.std import channel_std, mean_channel_std
from siamlab.train.loop import EpochView, StepView


class Hook(Protocol):
    """Computes diagnostics; returns {} when not scheduled."""

    def on_step(self, view: StepView) -> dict[str, Any]:
        """Values for this step."""
        ...

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        """Values for this epoch."""
        ...


@dataclass
class LossHook:
    """Loss and lr every step; the epoch's mean loss at its end."""

    _sum: float = 0.0
    _count: int = 0

    def on_step(self, view: StepView) -> dict[str, Any]:
        self._sum, self._count = self._sum + view.loss, self._count + 1
        return {"loss": view.loss, "lr": view.lr}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        mean = self._sum / max(self._count, 1)
        self._sum, self._count = 0.0, 0
        return {"epoch_loss": mean, "images_per_second": view.images / max(view.seconds, 1e-9)}


@dataclass
class TrainStdHook:
    """Std of z/||z|| on the training batch in train mode (paper Fig. 2 middle).

    The projector's output BN re-standardises every training batch, so this value
    resists falling to 0 even while the network collapses; see :class:`EvalStdHook`.
    """

    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        if view.step % self.every:
            return {}
        return {"z_std_train": mean_channel_std(view.output.z1)}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        return {}


@dataclass
class EvalStdHook:
    """Std of z/||z|| on the held-out probe set in eval mode: where it tells the truth."""

    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        return {}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        if view.epoch % self.every and not view.is_last:
            return {}
        per_channel = channel_std(probes.get("test").z)  # (d,)
        return {"z_std_eval": float(per_channel.mean()), "z_channel_std_eval": per_channel.numpy()}


@dataclass
class KnnHook:
    """Weighted kNN top-1 of InstDisc on backbone features (paper Fig. 2 right)."""

    num_classes: int
    k: int = 200
    temperature: float = 0.1
    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        return {}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        if view.epoch % self.every and not view.is_last:
            return {}
        bank, test = probes.get("bank"), probes.get("test")
        acc = knn_accuracy(
            bank.h, bank.labels, test.h, test.labels, self.num_classes, self.k, self.temperature
        )
        return {"knn_top1": acc["top1"]}


def create_hooks(cfg: DiagnosticsConfig, num_classes: int) -> list[Hook]:
    """The default diagnostics of a run, scheduled as ``cfg`` says."""
    return [
        LossHook(),
        TrainStdHook(cfg.std_every_steps),
        EvalStdHook(cfg.eval_every_epochs),
        KnnHook(num_classes, cfg.knn_k, cfg.knn_temperature, cfg.eval_every_epochs),
    ]
