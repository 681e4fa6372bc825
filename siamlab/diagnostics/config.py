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
    """Thresholds of the collapse verdict (the rule: :mod:`siamlab.diagnostics.verdict_rule`).

    Every geometric quantity is of z on the held-out split in eval mode, centred
    (:mod:`siamlab.diagnostics.centred`); "loss" is the paper's symmetric negative cosine,
    -pz_cosine_train, whatever the objective. The four thresholds below marked "tuned"
    were chosen on the tuning part of the labelled runs (digits seed 0 + synthetic
    trajectories) and tested on the rest: the confusion table is in the README, "How
    often the verdict is right", and in docs/verdict-calibration.md, which
    ``analysis/verdict_calibration.py`` regenerates.

    Attributes:
        hold_evaluations: consecutive evaluations a state must hold before the run's
            verdict enters it (hysteresis; non-finite values enter ``unstable`` at once).
        collapsed_residual_norm: tuned (README, "How often the verdict is right";
            docs/verdict-calibration.md); ``z_residual_norm`` (sqrt(1 - ||E z/|z| ||^2))
            under which the images have collapsed to one point (no stop-grad on digits
            ends at 0.05, healthy runs at 0.95-0.97). An offset of 3 sqrt(d) over an
            isotropic cloud keeps 0.32 (and is healthy).
        dimensional_erank_fraction: tuned; effective rank of the re-normalised residual
            over min(d, N) under which few directions are left (lr x 100 on digits:
            0.007; healthy: 0.31-0.39; the moving-average eta of Sec. 5.2 on CIFAR 0.075).
        partial_residual_norm: tuned (stage two, jointly with the next two);
            ``z_residual_norm`` under which the common centre holds a large part of each
            embedding (0.8: ``||o||^2 > 0.36``, as ``||o||^2 + E||r||^2 = 1``). No
            stop-grad / no predictor on the CIFAR subset end at 0.47-0.75, heads without
            BN at 0.67 (healthy by the next two), the moving-average eta of Sec. 5.2 at
            0.89 (healthy: low erank, but no dominant centre), SimSiam 0.95-0.97.
        partial_erank_fraction: tuned; with the centre dominating, a residual effective
            rank fraction under this is ``partial_collapse`` (no stop-grad / no predictor
            on the CIFAR subset: 0.14-0.21, seeds 0-4; healthy 0.31-0.39, heads without BN 0.31,
            an offset of 3 sqrt(d) over an isotropic cloud ~1).
        partial_residual_std: tuned; with the centre dominating, a residual std*sqrt(d)
            under this is ``partial_collapse`` too: the residual directions crowd a few
            channels (no stop-grad / no predictor on the CIFAR subset: 0.68-0.87;
            healthy runs 0.97-0.99, heads without BN 0.93).
        not_converging_progress: tuned; fraction of the way from the start loss to -1
            under which the loss has not converged (a fixed random predictor comes 22%
            of the way on digits, 19% on the CIFAR subset; SimSiam ~60-67%).
        improving_drop: fall of the loss over the last ``hold_evaluations`` evaluations
            above which a run below ``not_converging_progress`` is still converging.
        unstable_noise_ratio: loss jitter (RMS 2nd difference / sqrt(6)) over the step
            loss's sampling noise (std of the per-image cosines / sqrt(B)) above which the
            loss oscillates (tuned; healthy and collapsing runs measure 1-2.7 at any
            batch size, a +-0.1 oscillation 6-7).
        start_steps: first steps whose mean loss is the run's start loss.
    """

    model_config = ConfigDict(extra="forbid")

    hold_evaluations: int = Field(default=3, ge=1)
    collapsed_residual_norm: float = Field(default=0.2, gt=0, lt=1)
    dimensional_erank_fraction: float = Field(default=0.03, ge=0, le=1)
    partial_residual_norm: float = Field(default=0.8, gt=0, lt=1)
    partial_erank_fraction: float = Field(default=0.2, ge=0, le=1)
    partial_residual_std: float = Field(default=0.85, ge=0, le=1)
    not_converging_progress: float = Field(default=0.4, ge=0, le=1)
    improving_drop: float = Field(default=0.02, ge=0)
    unstable_noise_ratio: float = Field(default=4.0, gt=0)
    start_steps: int = Field(default=10, ge=1)


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
            centre ratio on the probe set, and the same per backbone stage (``stages``).
        predictor_every_epochs: predictor-correlation alignment (skipped for a predictor
            without parameters).
        auto_eval_points: evaluations per run that an ``"auto"`` epoch schedule aims at.
        knn_k: neighbours of the weighted kNN monitor (InstDisc: 200).
        knn_temperature: its temperature T (0.1 in CIFAR demos).
        probe_size: size of the fixed probe set (a seeded subset of the train split under
            the test transform) for spectra and ranks; None = the whole train split.
        bank_size: training images in the kNN bank (None = all).
        uniformity_samples: rows used for the O(N^2) uniformity, a seeded sample of the
            probe set and of the test split (all rows where they are fewer).
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
