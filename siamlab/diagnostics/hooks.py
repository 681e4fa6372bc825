"""Diagnostic hooks: each turns a read-only view of training into named values.

A hook has its own schedule. Step hooks see the :class:`~siamlab.train.loop.StepView`
(the batch's z/p/h, loss, lr, the model with this step's gradients); epoch hooks see the
epoch number and a :class:`ProbeCache` of eval-mode embeddings, never the optimiser.
Values must be declared in :mod:`siamlab.results.schema`. Adding a diagnostic = one class
+ one line in :func:`create_hooks`. The probe-set hooks (spectra, ranks, predictor
alignment) are in :mod:`siamlab.diagnostics.probe_hooks`, the per-step ones in
:mod:`siamlab.diagnostics.step_hooks`.
"""

from dataclasses import dataclass
from typing import Any, Protocol

from siamlab.diagnostics.config import DiagnosticsConfig, epoch_due
from siamlab.diagnostics.knn import knn_accuracy
from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.probe_hooks import PredictorAlignmentHook, SpectrumHook
from siamlab.diagnostics.std import channel_std, mean_channel_std
from siamlab.diagnostics.step_hooks import BatchGeometryHook, GradNormHook
from siamlab.diagnostics.verdict import VerdictJudge
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

    def state_dict(self) -> dict[str, Any]:
        """The running sum of the epoch's losses (for a mid-epoch checkpoint)."""
        return {"sum": self._sum, "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._sum, self._count = float(state["sum"]), int(state["count"])


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
    """Std of z/||z||, h/||h|| and p/||p|| on the held-out test split in eval mode.

    SimSiam (Chen & He, CVPR 2021) Sec. 4.1: ~1/sqrt(d) when healthy, 0 when collapsed.
    Eval mode is where it tells the truth; h shows whether collapse starts in the backbone.
    """

    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        return {}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        if not epoch_due(view.epoch, view.is_last, self.every):
            return {}
        test = probes.get("test")
        per_channel = channel_std(test.z)  # (d,)
        return {
            "z_std_eval": float(per_channel.mean()),
            "z_channel_std_eval": per_channel.numpy(),
            "h_std_eval": mean_channel_std(test.h),
            "p_std_eval": mean_channel_std(test.p),
        }


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
        if not epoch_due(view.epoch, view.is_last, self.every):
            return {}
        bank, test = probes.get("bank"), probes.get("test")
        acc = knn_accuracy(
            bank.h, bank.labels, test.h, test.labels, self.num_classes, self.k, self.temperature
        )
        return {"knn_top1": acc["top1"]}


def create_hooks(cfg: DiagnosticsConfig, num_classes: int, epochs: int = 1) -> list[Any]:
    """The default diagnostics of a run, scheduled as ``cfg`` says.

    Args:
        cfg: The diagnostics config.
        num_classes: Classes of the kNN monitor.
        epochs: Planned epochs of the run (resolves ``"auto"`` epoch schedules).

    Returns:
        The hooks in the order they run (the kNN hook first, so the probe set can reuse
        the bank's embeddings), then the :class:`VerdictJudge`, which summarises them.
    """
    eval_every = cfg.every_epochs(cfg.eval_every_epochs, epochs)
    return [
        LossHook(),
        TrainStdHook(cfg.std_every_steps),
        GradNormHook(cfg.grad_norm_every_steps),
        BatchGeometryHook(cfg.geometry_every_steps),
        KnnHook(num_classes, cfg.knn_k, cfg.knn_temperature, eval_every),
        EvalStdHook(eval_every),
        SpectrumHook(cfg.every_epochs(cfg.spectrum_every_epochs, epochs), cfg.uniformity_samples),
        PredictorAlignmentHook(
            cfg.every_epochs(cfg.predictor_every_epochs, epochs),
            cfg.correlation_every_steps,
            cfg.correlation_rho,
            cfg.predictor_top,
        ),
        VerdictJudge(cfg.verdict),
    ]
