"""Which collapse diagnostics run, how often, and the thresholds of the collapse verdict.

Schedules are per hook. Step schedules are "every N steps". Epoch schedules are "every N
epochs, plus the first and the last epoch"; ``"auto"`` picks N so that a run gets about
``auto_eval_points`` evaluations (N = ceil(epochs / auto_eval_points)): every epoch for the
40-epoch ``quick`` profile, every 20 for the 800-epoch ``cifar10`` profile, which keeps the
eval-mode passes within 5% of training time (README, "Collapse diagnostics").
"""

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from siamlab.diagnostics.registry import CONDITIONAL, DEFAULT_HOOKS, HOOKS, unknown_hooks

EpochSchedule = Annotated[int, Field(ge=1)] | Literal["auto"]


def epoch_due(epoch: int, is_last: bool, every: int) -> bool:
    """An epoch schedule: every ``every`` epochs (1-based ``epoch``), plus the first and last."""
    return epoch % every == 0 or epoch == 1 or is_last


class VerdictConfig(BaseModel):
    """Thresholds of the per-epoch collapse verdict (see :mod:`siamlab.diagnostics.verdict`).

    "Constant output" means ``z_std_eval * sqrt(d) < collapsed_std`` or
    ``z_uniformity > collapsed_uniformity``. "Loss" is the paper's symmetric negative
    cosine, -pz_cosine_train, whatever the objective. Checked in this order; the first
    that applies wins:

    1. ``unstable``: a non-finite loss or eval-mode embedding in the epoch, or
       ``loss_jitter > unstable_jitter``.
    2. ``collapsed``: constant output and ``epoch_loss < collapsed_loss``: the loss went
       down by making the output constant, the trivial solution (SimSiam Fig. 2).
    3. ``not_converging``: constant output (the loss has not gone down: e.g. a network at
       its random init, whose eval-mode outputs are nearly constant), or
       ``epoch_loss > not_converging_loss``.
    4. ``dimensional_collapse``: ``z_erank_fraction < dimensional_erank_fraction`` (the
       output is not constant: the std is healthy; Jing et al., ICLR 2022).
    5. ``healthy`` otherwise.

    The defaults come from real short runs (digits and the CIFAR-10 subset; README,
    "Collapse diagnostics").

    Attributes:
        collapsed_std: eval-mode std of z/||z|| times sqrt(d) under which the output is
            constant. Healthy SimSiam gives 0.9-1.0, no stop-grad on digits 0.03; a rank-1
            subspace still gives ~0.8 (docs/diagnostics.md#channel-std): flags full collapse only.
        collapsed_uniformity: uniformity (t = 2) of z on the probe set above which the
            output is constant: random image pairs are then typically within cos ~0.9.
            Healthy runs measure -1.6 to -4 (-4 + 8/d when isotropic). It catches what the
            std misses in eval mode: on the CIFAR-10 subset without stop-grad, BN left the
            std at 0.53/sqrt(d) while the uniformity was -0.3 and the loss -0.89.
        collapsed_loss: epoch loss (symmetric negative cosine, -1 = perfect match) under
            which a constant output is a collapse. Without stop-grad the loss is -0.7 to
            -0.9 when the std reaches ~0; at lr x 400 the output went constant at -0.4.
        not_converging_loss: epoch loss above which training is not converging. A fixed
            random predictor stays at ~-0.1 on digits; healthy SimSiam passes -0.3 after
            ~30-80 steps and ends near -0.8 (a short run may end "not converging": it has
            not converged yet).
        dimensional_erank_fraction: effective rank of z (raw singular values) over
            min(d, N) under which a non-constant output is dimensionally collapsed. Healthy
            SimSiam measures 0.2 (CIFAR subset, d = 512) to 0.3-0.5 (digits); lr x 100 on
            digits 0.02 with a healthy std 0.96 and a falling kNN; a rank-k subspace <= k/d.
        unstable_jitter: step-to-step loss noise (RMS second difference / sqrt(6)) over
            which the loss is oscillating. Healthy runs measure 0.005-0.07 at batch 64-128
            (noise shrinks as 1/sqrt(batch)); an oscillation of +-0.1 gives 0.16.
    """

    model_config = ConfigDict(extra="forbid")

    collapsed_std: float = Field(default=0.3, gt=0, lt=1)
    collapsed_uniformity: float = Field(default=-0.5, le=0)
    collapsed_loss: float = Field(default=-0.3, ge=-1, le=1)
    not_converging_loss: float = Field(default=-0.3, ge=-1, le=1)
    dimensional_erank_fraction: float = Field(default=0.05, ge=0, le=1)
    unstable_jitter: float = Field(default=0.15, gt=0)


class DiagnosticsConfig(BaseModel):
    """Which diagnostics run, their schedules and parameters (docs/diagnostics.md).

    Attributes:
        hooks: names of the hooks to run, from :data:`~siamlab.diagnostics.registry.HOOKS`
            (default: all, in registry order). Conditional ones: ``eta_stats`` runs only
            with eta targets (``objective.eta.mode`` not off); ``predictor_alignment``
            records nothing for a predictor without parameters; ``verdict`` judges only
            epochs with ``eval_std`` and ``loss`` values (it records ``loss_jitter`` anyway).
        std_every_steps: per-step loss is always logged; the train-mode std of the
            batch's z/||z|| every N steps.
        grad_norm_every_steps: gradient norm of backbone, projector and predictor.
        geometry_every_steps: batch alignment of the two views' z, backbone branch
            cosine and centre ratio.
        correlation_every_steps: update the EMA of F = E[z z^T] (both views) used by
            the predictor alignment; the EMA restarts every epoch.
        correlation_rho: EMA decay of F (0.3 in DirectPred's reference command).
        eval_every_epochs: eval-mode std on the test split and the kNN monitor.
        spectrum_every_epochs: spectra, RankMe, effective rank, alpha-ReQ, uniformity and
            centre ratio on the probe set.
        predictor_every_epochs: predictor-correlation alignment (skipped for a predictor
            without parameters).
        auto_eval_points: evaluations per run that an ``"auto"`` epoch schedule aims at.
        knn_k: neighbours of the weighted kNN monitor (InstDisc: 200).
        knn_temperature: its temperature T (0.1 in CIFAR demos).
        probe_size: size of the fixed probe set (a seeded subset of the train split under
            the test transform) for spectra and ranks; None = the whole train split.
        bank_size: training images in the kNN bank (None = all).
        uniformity_samples: probe samples used for the O(N^2) uniformity.
        predictor_top: leading eigenvectors of F averaged into ``pred_cosine``.
        verdict: thresholds of the collapse verdict.
    """

    model_config = ConfigDict(extra="forbid")

    hooks: list[str] = Field(default_factory=lambda: list(DEFAULT_HOOKS))
    std_every_steps: int = Field(default=1, ge=1)
    grad_norm_every_steps: int = Field(default=1, ge=1)
    geometry_every_steps: int = Field(default=1, ge=1)
    correlation_every_steps: int = Field(default=1, ge=1)
    correlation_rho: float = Field(default=0.3, ge=0, lt=1)
    eval_every_epochs: EpochSchedule = "auto"
    spectrum_every_epochs: EpochSchedule = "auto"
    predictor_every_epochs: EpochSchedule = "auto"
    auto_eval_points: int = Field(default=40, ge=1)
    knn_k: int = Field(default=200, ge=1)
    knn_temperature: float = Field(default=0.1, gt=0)
    probe_size: int | None = Field(default=8192, ge=2)
    bank_size: int | None = Field(default=None, ge=1)
    uniformity_samples: int = Field(default=4096, ge=2)
    predictor_top: int = Field(default=16, ge=1)
    verdict: VerdictConfig = VerdictConfig()

    @field_validator("hooks")
    @classmethod
    def _registered(cls, names: list[str]) -> list[str]:
        unknown = unknown_hooks(names)
        if unknown:
            raise ValueError(
                f"unknown hook(s) {', '.join(map(repr, unknown))}; registered hooks: "
                f"{', '.join(HOOKS)} (conditional: {', '.join(CONDITIONAL)})"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"a hook is listed twice in {names}; list each once")
        return names

    def every_epochs(self, schedule: EpochSchedule, epochs: int) -> int:
        """Resolve an epoch schedule to N for a run of ``epochs`` epochs (``auto`` or N)."""
        if schedule == "auto":
            return max(1, math.ceil(epochs / self.auto_eval_points))
        return schedule
