"""The verdict of a checkpoint, from its embeddings alone.

A checkpoint holds weights, not the training loss, so of the training verdict's six states
(:mod:`siamlab.diagnostics.verdict_rule`) four can be told from the embeddings and two
cannot:

- ``collapsed``: the residual of z/|z| around its centre has vanished
  (``z_residual_norm < collapsed_residual_norm``): every image maps to nearly one point
  (SimSiam Fig. 2; Zhang et al., ICLR 2022). During training the same geometry with a loss
  that did not go down is ``not_converging``; without the loss the two look alike, and
  this rule says ``collapsed`` -- the representation *is* collapsed, whatever the cause.
- ``dimensional_collapse``: the residual spans few effective dimensions
  (``z_residual_erank_fraction < dimensional_erank_fraction``; Jing et al., ICLR 2022).
- ``partial_collapse``: the centre holds a large part of each embedding
  (``z_residual_norm < partial_residual_norm``) and the residual spans few directions
  (``z_residual_erank_fraction < partial_erank_fraction`` or ``z_residual_std <
  partial_residual_std``): a collapse under way or stalled on its way.
- ``healthy``: none of these.
- ``unstable`` only when the embeddings are not finite (no residual could be measured).
  An oscillating loss (the training rule's other ``unstable``) and ``not_converging``
  need the training loss: never said here.

The rule is the training rule's geometric part itself
(:func:`~siamlab.diagnostics.verdict_rule.judge_geometry`, one definition for both) with its
thresholds (:class:`~siamlab.diagnostics.config.VerdictConfig`), calibrated on z. A
checkpoint without the projector (a plain torchvision backbone) is judged on the backbone
features h with the same thresholds: indicative only, as ReLU features sit
in the positive orthant and keep a larger centre than z.

Over the epochs of a folder the states fold into a run verdict with the training rule's
hysteresis (:func:`~siamlab.diagnostics.verdict_rule.run_verdict`), holding for
``min(hold_evaluations, checkpoints)`` evaluations, so that a single checkpoint is judged
on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict_rule import RunVerdict, judge_geometry, run_verdict

NEEDS_LOSS = ("not_converging", "unstable by an oscillating loss")


def judge_embeddings(
    cfg: VerdictConfig, values: Mapping[str, Any], branch: str, epoch: int
) -> tuple[str, str]:
    """The state of one checkpoint from its centred geometry on ``branch`` ("z" or "h").

    Args:
        cfg: the thresholds.
        values: the checkpoint's measured values (``{branch}_residual_norm`` ...).
        branch: which output is judged.
        epoch: the checkpoint's epoch, for the evidence.

    Returns:
        ``(state, evidence)``.
    """
    norm = float(values.get(f"{branch}_residual_norm", math.nan))
    frac = float(values.get(f"{branch}_residual_erank_fraction", math.nan))
    if not (math.isfinite(norm) and math.isfinite(frac)):
        return "unstable", f"non-finite embeddings at epoch {epoch} (no residual measured)"
    spread = float(values.get(f"{branch}_residual_std", math.nan))  # NaN: not measured
    state, evidence = judge_geometry(cfg, norm, frac, spread, branch)
    if state == "collapsed":
        evidence += ": the images map to nearly one point"
    return state, evidence


def hold_for(cfg: VerdictConfig, evaluations: int) -> VerdictConfig:
    """``cfg`` with ``hold_evaluations`` at most ``evaluations`` (one checkpoint: 1)."""
    return cfg.model_copy(update={"hold_evaluations": min(cfg.hold_evaluations, evaluations)})


def fold(judged: Sequence[tuple[int, str, str]], cfg: VerdictConfig) -> list[RunVerdict]:
    """The run verdict as of each judged epoch (``judged``: (epoch, state, evidence))."""
    return [run_verdict(judged[: i + 1], cfg.hold_evaluations) for i in range(len(judged))]


def first_collapsed(judged: Sequence[tuple[int, str, str]]) -> int | None:
    """The first epoch judged ``collapsed`` (None: none)."""
    return next((epoch for epoch, state, _ in judged if state == "collapsed"), None)
