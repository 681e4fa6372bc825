"""The collapse rule: one state per evaluated epoch, one verdict per run. Torch-free.

Per evaluated epoch, from the centred geometry of z on the held-out split
(:mod:`siamlab.diagnostics.centred`) and the training loss, the first that applies wins:

1. ``unstable`` -- a non-finite loss or embedding, or a loss whose step-to-step jitter
   is ``unstable_noise_ratio`` times the sampling noise of a batch mean of this size
   (the paper's Table 3 d, BN on the predictor output: "the loss oscillates").
2. ``collapsed`` -- complete collapse, all images map to one point: the residual around
   the centre has vanished (``residual_norm < collapsed_residual_norm``) and the loss
   went down to get there (SimSiam Fig. 2; Zhang et al., ICLR 2022).
3. ``dimensional_collapse`` -- the residual spans few effective dimensions
   (``residual_erank_fraction < dimensional_erank_fraction``; Jing et al., ICLR 2022).
4. ``partial_collapse`` -- the images crowd around their common centre and what still
   tells them apart spans few directions: the centre holds a large part of each embedding
   (``residual_norm < partial_residual_norm``, 0.8: ``||o||^2 > 0.36``), the
   residual is left in few directions (its effective rank ``residual_erank_fraction <
   partial_erank_fraction``, or its per-channel spread ``residual_std <
   partial_residual_std``: the paper's std of the l2-normalised output, taken on the
   residual), and the loss went down to get there. A complete collapse
   under way, or stalled on its way (no stop-gradient in a short run; the no-predictor
   control of Sec. 5.2 on digits, which sits there for 120 epochs).
5. ``not_converging`` -- the loss made less than ``not_converging_progress`` of its way
   from the run's start to -1 and is no longer falling (the paper's fixed random
   predictor, Table 1 b). A run still falling, or too young to have a trend (its first
   ``hold_evaluations - 1`` evaluations), is "not converged yet" and stays healthy.
6. ``healthy`` -- none of the above. A large common offset over a full-rank residual is
   healthy: every image is still distinct, in every direction (the offset alone, with a
   residual of healthy rank, is not ``partial_collapse`` either).

Per run, a state is *entered* once it holds for ``hold_evaluations`` consecutive
evaluations (hysteresis): a run near a threshold does not flip its verdict every epoch.
Non-finite values enter ``unstable`` at once. Thresholds:
:class:`~siamlab.diagnostics.config.VerdictConfig`, calibrated on labelled runs (README,
"How often the verdict is right"; ``analysis/verdict_calibration.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from siamlab.diagnostics.config import VerdictConfig

VERDICTS: tuple[str, ...] = (
    "healthy",
    "collapsed",
    "dimensional_collapse",
    "unstable",
    "not_converging",
    "partial_collapse",  # last: TensorBoard's verdict_code (an index here) stays as it was
)


def loss_jitter(losses: Sequence[float]) -> float:
    """Step-to-step noise of a loss series, insensitive to its smooth trend.

    ``sqrt(mean((L[t+1] - 2 L[t] + L[t-1])^2) / 6)``: for a smooth trend plus i.i.d. noise of
    std ``s`` the second differences have variance ``6 s^2``, so this estimates ``s``; a
    steadily falling loss gives ~0, a loss alternating by ``+-a`` gives ``4a/sqrt(6)``.

    Args:
        losses: Per-step losses of one epoch, in order, shape ``(T,)``.

    Returns:
        The jitter; NaN for fewer than 3 values (not judged), ``inf`` if a loss is not finite.
    """
    x = np.asarray(losses, dtype=np.float64)  # (T,)
    if x.size and not np.isfinite(x).all():
        return math.inf
    if x.size < 3:
        return math.nan
    second = x[2:] - 2.0 * x[1:-1] + x[:-2]  # (T - 2,)
    return float(np.sqrt(np.mean(second**2) / 6.0))


@dataclass(frozen=True)
class EpochSignals:
    """What the rule reads for one evaluated epoch (NaN = not measured).

    Attributes:
        epoch: 1-based epoch.
        loss: mean symmetric negative cosine of the epoch (-1 = perfect match).
        start_loss: mean of the run's first ``start_steps`` step losses.
        earlier_loss: ``loss`` of the evaluation ``hold_evaluations - 1`` evaluations
            earlier (NaN for the first ones): the recent trend.
        residual_norm: ``z_residual_norm`` on the held-out split, eval mode.
        residual_erank_fraction: ``z_residual_erank_fraction`` there.
        jitter: :func:`loss_jitter` of the epoch's step losses.
        noise: mean standard error of the step loss over the epoch's batches.
        finite: the loss and the eval-mode embeddings were finite.
        residual_std: ``z_residual_std`` there (std·sqrt(d) of ``r / ||r||``; 1 when the
            residual directions spread evenly over the channels).
    """

    epoch: int
    loss: float
    start_loss: float
    earlier_loss: float
    residual_norm: float
    residual_erank_fraction: float
    jitter: float
    noise: float
    finite: bool = True
    residual_std: float = math.nan

    @property
    def progress(self) -> float:
        """Fraction of the way from the start loss to -1 that the loss has come."""
        room = self.start_loss + 1.0
        return (self.start_loss - self.loss) / room if room > 1e-9 else 1.0

    @property
    def noise_ratio(self) -> float:
        """Jitter over the sampling noise of the step loss (~1 when healthy)."""
        return self.jitter / self.noise if self.noise > 0 else math.nan


def few_directions(cfg: VerdictConfig, erank_fraction: float, residual_std: float) -> list[str]:
    """What says a residual is left in few directions (``partial_collapse``); [] if nothing.

    Args:
        cfg: the thresholds (``partial_erank_fraction``, ``partial_residual_std``).
        erank_fraction: the residual's effective rank over min(d, N).
        residual_std: std*sqrt(d) of the re-normalised residual (NaN: not measured).
    """
    few = []
    if erank_fraction < cfg.partial_erank_fraction:
        few.append(f"residual erank/min(d,N) {erank_fraction:.3g} < {cfg.partial_erank_fraction:g}")
    if residual_std < cfg.partial_residual_std:
        few.append(f"residual std*sqrt(d) {residual_std:.2f} < {cfg.partial_residual_std:g}")
    return few


def judge_geometry(
    cfg: VerdictConfig,
    residual_norm: float,
    erank_fraction: float,
    residual_std: float = math.nan,
    branch: str = "z",
) -> tuple[str, str]:
    """What the centred geometry alone says: rules 2-4 without their loss clauses.

    The one place the geometric thresholds are applied: :func:`judge_epoch` adds the
    loss to it during training, ``siamlab diagnose`` judges a checkpoint by it alone
    (:mod:`siamlab.diagnose.verdict`). NaN values compare False (not measured: no state).

    Args:
        cfg: the thresholds.
        residual_norm: ``{branch}_residual_norm``, sqrt(1 - ||E x/|x| ||^2).
        erank_fraction: the residual's effective rank over min(d, N).
        residual_std: std*sqrt(d) of the re-normalised residual (NaN: not measured).
        branch: the output judged, for the evidence ("z"; "h" for a backbone checkpoint).

    Returns:
        ``(state, evidence)``: ``collapsed``, ``dimensional_collapse``, ``partial_collapse``
        or ``healthy``, e.g. ``("collapsed", "z residual norm 0.031 < 0.2")``.
    """
    if residual_norm < cfg.collapsed_residual_norm:
        return "collapsed", (
            f"{branch} residual norm {residual_norm:.3g} < {cfg.collapsed_residual_norm:g}"
        )
    if erank_fraction < cfg.dimensional_erank_fraction:
        return "dimensional_collapse", (
            f"{branch} residual erank/min(d,N) {erank_fraction:.3g} < "
            f"{cfg.dimensional_erank_fraction:g} (residual norm {residual_norm:.2f})"
        )
    few = few_directions(cfg, erank_fraction, residual_std)
    if residual_norm < cfg.partial_residual_norm and few:  # the centre holds much of x/|x|
        return "partial_collapse", (
            f"{branch} residual norm {residual_norm:.2f} < {cfg.partial_residual_norm:.3g} "
            f"(the centre dominates) and {' and '.join(few)}"
        )
    spread = f", std*sqrt(d) {residual_std:.2f}" if math.isfinite(residual_std) else ""
    return "healthy", (
        f"{branch} residual norm {residual_norm:.2f}, erank/min(d,N) {erank_fraction:.2f}{spread}"
    )


def judge_epoch(cfg: VerdictConfig, s: EpochSignals) -> tuple[str, str]:
    """The state of one evaluated epoch and the evidence for it (order: module docstring).

    Rules 2-4 are :func:`judge_geometry`'s, each with its loss clause added here.

    Returns:
        ``(state, evidence)``, e.g. ``("collapsed", "z residual norm 0.031 < 0.2 with the
        loss down to -0.930")``.
    """
    if not (s.finite and math.isfinite(s.loss)) or s.jitter == math.inf:
        return "unstable", f"non-finite loss or embeddings at epoch {s.epoch}"
    if s.noise_ratio > cfg.unstable_noise_ratio:  # NaN (not measured) compares False
        return "unstable", (
            f"loss jitter {s.jitter:.3g} = {s.noise_ratio:.1f}x its sampling noise "
            f"{s.noise:.3g} > {cfg.unstable_noise_ratio:g}x"
        )
    geometry, seen = judge_geometry(cfg, s.residual_norm, s.residual_erank_fraction, s.residual_std)
    converged = s.progress >= cfg.not_converging_progress
    if geometry == "collapsed":
        if converged:
            return "collapsed", f"{seen} with the loss down to {s.loss:.3f}"
        return "not_converging", (
            f"{seen} but the loss has not gone down ({s.start_loss:.3f} -> {s.loss:.3f})"
        )
    if geometry == "dimensional_collapse":
        return geometry, seen
    if geometry == "partial_collapse" and converged:
        return geometry, f"{seen}, loss {s.loss:.3f}"
    if s.progress < cfg.not_converging_progress:  # NaN (no start) compares False
        falling = s.earlier_loss - s.loss > cfg.improving_drop  # NaN compares False
        if not math.isfinite(s.earlier_loss):
            return "healthy", f"not converged yet: loss {s.loss:.3f}, no trend yet"
        if not falling:
            return "not_converging", (
                f"loss {s.start_loss:.3f} -> {s.loss:.3f}: {100 * s.progress:.0f}% of the way "
                f"to -1 < {100 * cfg.not_converging_progress:.0f}%, and no longer falling"
            )
        return "healthy", f"not converged yet: loss {s.loss:.3f} still falling"
    return "healthy", f"{seen}, loss {s.loss:.3f}"


@dataclass(frozen=True)
class RunVerdict:
    """The verdict of a whole run.

    Attributes:
        verdict: one of :data:`VERDICTS`; "" before the first evaluation.
        onset_epoch: first epoch of the streak that entered it (0 = none).
        evidence: which measurement crossed which threshold, from when.
        provisional: no state has held ``hold_evaluations`` evaluations yet; the verdict
            is then the latest state.
    """

    verdict: str = ""
    onset_epoch: int = 0
    evidence: str = ""
    provisional: bool = True

    @property
    def collapsed(self) -> bool:
        """The run has entered complete collapse (held long enough, not provisional)."""
        return self.verdict == "collapsed" and not self.provisional


def run_verdict(judged: Sequence[tuple[int, str, str]], hold: int) -> RunVerdict:
    """Fold per-epoch ``(epoch, state, evidence)`` into the run's verdict with hysteresis.

    A state is entered when it has held for ``hold`` consecutive evaluations; a non-finite
    ``unstable`` at once. The entered state stays until another one is entered; its
    evidence is that of the latest evaluation in that state, with the onset.

    Args:
        judged: evaluated epochs in order.
        hold: evaluations a state must hold before the run enters it.
    """
    entered, onset, after, latest = "", 0, 0, ""
    streak_start, streak_len, state = 0, 0, ""
    for epoch, current, evidence in judged:
        if current == state:
            streak_len += 1
        else:
            state, streak_start, streak_len = current, epoch, 1
        immediate = current == "unstable" and evidence.startswith("non-finite")
        if (streak_len >= hold or immediate) and entered != state:
            entered, onset, after = state, streak_start, streak_len
        if current == entered:
            latest = evidence
    if entered:
        since = f"since epoch {onset} (entered after {after} evaluation{'s' * (after > 1)})"
        return RunVerdict(entered, onset, f"{latest}; {since}", provisional=False)
    if not state:
        return RunVerdict()
    return RunVerdict(
        state,
        streak_start,
        f"{judged[-1][2]}; since epoch {streak_start} (provisional: {streak_len} of the "
        f"{hold} evaluations that enter a verdict)",
        provisional=True,
    )
