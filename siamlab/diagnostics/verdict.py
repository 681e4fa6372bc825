"""The verdict hook: judges every evaluated epoch and folds the states into the run's verdict.

The rule itself (states, order, hysteresis) is torch-free and lives in
:mod:`siamlab.diagnostics.verdict_rule`; this summary collects what it reads from the
hooks' values -- the step losses, their sampling noise, the centred geometry of z -- and
records every input next to its output, so that ``analysis/verdict_calibration.py``
re-judges a finished run from its ``metrics.nc`` alone (:func:`signals_from_epochs`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict_rule import (
    VERDICTS,
    EpochSignals,
    RunVerdict,
    judge_epoch,
    loss_jitter,
    run_verdict,
)
from siamlab.results.schema import ResultVar

if TYPE_CHECKING:
    from siamlab.diagnostics.hooks import HookContext

__all__ = ["VERDICTS", "VerdictJudge", "loss_jitter", "signals_from_epochs", "verdict_attrs"]


def _epoch_var(name: str, long_name: str) -> ResultVar:
    return ResultVar(name, ("epoch",), long_name, "1")


def _get(record: Mapping[str, Any], key: str) -> float:
    return float(record.get(key, math.nan))


def signals_from_epochs(epochs: list[dict[str, Any]], cfg: VerdictConfig) -> list[EpochSignals]:
    """The rule's inputs for a run's evaluated epochs, from their recorded values.

    Args:
        epochs: per evaluated epoch, in order: ``epoch``, ``cosine_loss``, ``start_loss``,
            ``z_residual_norm``, ``z_residual_erank_fraction``, ``z_residual_std``,
            ``loss_jitter``,
            ``loss_noise`` and ``z_std_eval`` (missing = NaN).
        cfg: the thresholds (``hold_evaluations`` sets the trend window).
    """
    out: list[EpochSignals] = []
    for i, e in enumerate(epochs):
        back = i - (cfg.hold_evaluations - 1)
        earlier = float(epochs[back]["cosine_loss"]) if back >= 0 and back != i else math.nan
        out.append(
            EpochSignals(
                epoch=int(e["epoch"]),
                loss=_get(e, "cosine_loss"),
                start_loss=_get(e, "start_loss"),
                earlier_loss=earlier,
                residual_norm=_get(e, "z_residual_norm"),
                residual_erank_fraction=_get(e, "z_residual_erank_fraction"),
                residual_std=_get(e, "z_residual_std"),
                jitter=_get(e, "loss_jitter"),
                noise=_get(e, "loss_noise"),
                finite=math.isfinite(_get(e, "z_std_eval")),
            )
        )
    return out


@dataclass
class VerdictJudge:
    """Judges each epoch that has ``z_std_eval`` and ``epoch_loss``; keeps the run verdict.

    The loss it judges is the paper's symmetric negative cosine, ``-pz_cosine_train``
    when the batch-geometry hook measured it (a cross-entropy loss lives near log d, not
    in [-1, 1]); the recorded ``loss`` otherwise. For the default objective they agree.

    Attributes:
        cfg: the thresholds.
        run: the run's verdict so far.
        entered: the latest epoch's evaluation made the run enter ``run`` (a new state,
            or the first that held long enough); False after an epoch without one.
            Transient, read at that epoch's end (``train.stop_on_collapse``), not saved.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        _epoch_var("loss_jitter", "step-to-step noise of the judged loss: RMS 2nd diff. / sqrt(6)"),
        _epoch_var("loss_noise", "mean over the epoch's steps of the step loss's standard error"),
        _epoch_var("loss_noise_ratio", "loss_jitter / loss_noise: ~1 healthy, >> 1 oscillating"),
        _epoch_var("cosine_loss", "mean symmetric negative cosine over the epoch (judged loss)"),
        _epoch_var("start_loss", "mean judged loss of the run's first verdict.start_steps steps"),
        _epoch_var(
            "verdict",
            "this epoch's state: healthy | collapsed | dimensional_collapse | "
            "partial_collapse | unstable | not_converging ('' where not judged)",
        ),
        _epoch_var("verdict_evidence", "which measurement crossed which threshold"),
        _epoch_var("run_verdict", "the run's verdict as of this epoch (hysteresis)"),
        _epoch_var("run_verdict_onset_epoch", "first epoch of the streak that entered it"),
        _epoch_var("run_verdict_evidence", "the evidence of the run's verdict, from when"),
        _epoch_var("run_verdict_provisional", "1 = no state has held long enough yet"),
    )
    cfg: VerdictConfig
    run: RunVerdict = field(default_factory=RunVerdict)
    entered: bool = False
    _losses: list[float] = field(default_factory=list)
    _cosine_losses: list[float] = field(default_factory=list)
    _noise: list[float] = field(default_factory=list)
    _start: list[float] = field(default_factory=list)
    _cosine_seen: bool = False
    _epochs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def build(cls, ctx: HookContext) -> VerdictJudge:
        """With the thresholds of ``diagnostics.verdict``."""
        return cls(ctx.cfg.verdict)

    @property
    def latest(self) -> str:
        """The most recent per-epoch state ("" before the first)."""
        return str(self._epochs[-1]["verdict"]) if self._epochs else ""

    def summarise(self, scope: str, index: int, values: Mapping[str, Any]) -> dict[str, Any]:
        """Collect a step's losses, or judge epoch ``index`` from its values."""
        if scope == "step":
            self._collect(values)
            return {}
        self.entered = False
        losses, cosine = self._losses, self._cosine_losses
        judged = cosine if cosine and bool(np.isfinite(losses).all()) else losses
        noise = float(np.mean(self._noise)) if self._noise else math.nan
        self._losses, self._cosine_losses, self._noise = [], [], []
        jitter = loss_jitter(judged)
        out: dict[str, Any] = {"loss_jitter": jitter, "loss_noise": noise}
        out["loss_noise_ratio"] = jitter / noise if noise > 0 else math.nan
        if "z_std_eval" not in values or "epoch_loss" not in values:
            return out
        loss = float(np.mean(judged)) if judged is cosine else float(values["epoch_loss"])
        start = float(np.mean(self._start)) if self._start else loss
        record: dict[str, Any] = {
            "epoch": index,
            "cosine_loss": loss,
            "start_loss": start,
            "loss_jitter": jitter,
            "loss_noise": noise,
            "z_std_eval": float(values["z_std_eval"]),
            **{k: float(values[k]) for k in RESIDUAL if k in values},
        }
        self._epochs.append(record)
        signals = signals_from_epochs(self._epochs, self.cfg)[-1]
        state, evidence = judge_epoch(self.cfg, signals)
        record |= {"verdict": state, "verdict_evidence": evidence}
        before, self.run = self.run, self._fold()
        self.entered = not self.run.provisional and (
            before.provisional or before.verdict != self.run.verdict
        )
        return out | {
            "cosine_loss": loss,
            "start_loss": start,
            "verdict": state,
            "verdict_evidence": evidence,
            "run_verdict": self.run.verdict,
            "run_verdict_onset_epoch": float(self.run.onset_epoch),
            "run_verdict_evidence": self.run.evidence,
            "run_verdict_provisional": float(self.run.provisional),
        }

    def _collect(self, values: Mapping[str, Any]) -> None:
        """Take this step's losses; the start loss takes only a loss measured at this step.

        The batch-geometry hook may measure ``pz_cosine_train`` only every N steps: the
        start then takes each cosine once, and the recorded loss until a first cosine.
        """
        cosine = "pz_cosine_train" in values
        if "loss" in values:
            self._losses.append(float(values["loss"]))
        if cosine:
            self._cosine_losses.append(-float(values["pz_cosine_train"]))
            self._cosine_seen = True
        if "pz_cosine_sem_train" in values and math.isfinite(values["pz_cosine_sem_train"]):
            self._noise.append(float(values["pz_cosine_sem_train"]))
        if len(self._start) < self.cfg.start_steps:
            if cosine:
                self._start.append(self._cosine_losses[-1])
            elif "loss" in values and not self._cosine_seen:
                self._start.append(self._losses[-1])

    def state_dict(self) -> dict[str, Any]:
        """Everything the judge has seen (for a checkpoint taken mid-epoch)."""
        return {
            "losses": list(self._losses),
            "cosine_losses": list(self._cosine_losses),
            "noise": list(self._noise),
            "start": list(self._start),
            "cosine_seen": self._cosine_seen,
            "epochs": [dict(e) for e in self._epochs],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._losses = [float(x) for x in state["losses"]]
        self._cosine_losses = [float(x) for x in state.get("cosine_losses", [])]
        self._noise = [float(x) for x in state.get("noise", [])]
        self._start = [float(x) for x in state.get("start", [])]
        self._cosine_seen = bool(state.get("cosine_seen", self._cosine_losses))
        self._epochs = [dict(e) for e in state.get("epochs", [])]
        self.run = self._fold()

    def _fold(self) -> RunVerdict:
        """The run verdict of the epochs judged so far."""
        return run_verdict(
            [(int(e["epoch"]), e["verdict"], e["verdict_evidence"]) for e in self._epochs],
            self.cfg.hold_evaluations,
        )


RESIDUAL = ("z_residual_norm", "z_residual_erank_fraction", "z_residual_std")


def verdict_attrs(
    run: RunVerdict, status: str, cfg: VerdictConfig, diverged_step: int | None = None
) -> dict[str, str | float | int]:
    """Dataset attrs: the run's ``verdict``, its onset and evidence, and the thresholds.

    Args:
        run: the run verdict (``run_verdict`` of the last evaluation).
        status: the run's status; ``diverged`` makes the verdict ``unstable``.
        cfg: the thresholds, stored as ``verdict_<name>`` attrs.
        diverged_step: the step whose loss was not finite, for the evidence.

    Returns:
        ``{"verdict": ..., "verdict_onset_epoch": 12, "verdict_evidence": ...,
        "verdict_provisional": 0, "verdict_hold_evaluations": 3.0, ...}``.
    """
    if status == "diverged":
        where = f" at step {diverged_step}" if diverged_step is not None else ""
        run = RunVerdict("unstable", run.onset_epoch, f"the loss became non-finite{where}", False)
    thresholds = {f"verdict_{k}": float(v) for k, v in cfg.model_dump().items()}
    return {
        "verdict": run.verdict,
        "verdict_onset_epoch": run.onset_epoch,
        "verdict_evidence": run.evidence,
        "verdict_provisional": int(run.provisional),
        **thresholds,
    }
