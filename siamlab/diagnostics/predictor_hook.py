"""Epoch hook: alignment of the predictor with the correlation of z (DirectPred).

F is accumulated on the training batches (a step part), W_p linearised on the fixed probe
set's eval-mode embeddings (an epoch part); both in float64 on the model's device.
"""

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from siamlab.diagnostics.config import epoch_due
from siamlab.diagnostics.hooks import HookContext, Values
from siamlab.diagnostics.linearise import linearise_streamed
from siamlab.diagnostics.predictor_alignment import predictor_alignment
from siamlab.diagnostics.probe import ProbeCache
from siamlab.results.schema import PROBE_SET, ResultVar
from siamlab.train.views import EpochView, StepView

F_AND_W = {"bn_mode": "F: train (EMA over the epoch's batches); W_p: eval", "data": "probe set"}


@dataclass
class PredictorAlignmentHook:
    """Alignment of the predictor with the correlation of z (DirectPred, Tian et al. 2021).

    ``F`` is the EMA ``F <- rho F + (1 - rho) mean(z z^T)`` over the batches' z of both
    views (train mode), updated every ``step_every`` steps and restarted each epoch
    (so a resumed run sees the same F); in an epoch whose alignment is not due F is not
    kept at all (nothing reads it), which changes no recorded value. The matmul runs in
    float32, the average in float64.
    ``W_p`` is the predictor's least-squares linearisation ``p ~ W_p z + b`` on the probe
    set's eval-mode (z, p) (:mod:`~siamlab.diagnostics.linearise`; exact for a linear one).
    Skipped for a predictor without parameters (identity: W_p = I aligns trivially) or
    when the probe set has fewer than d + 1 samples.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "pred_cosine",
            ("epoch",),
            "mean over the top eigenvectors u_j of F=E[zz^T] of cos(u_j, W_p u_j) "
            "(Tian et al. 2021)",
            "1",
            F_AND_W,
        ),
        ResultVar(
            "pred_cosines",
            ("epoch", "component"),
            "cos(u_j, W_p u_j) for every eigenvector u_j of F, descending eigenvalue order",
            "1",
            F_AND_W,
        ),
        ResultVar(
            "pred_eigenvalues",
            ("epoch", "component"),
            "real parts of the eigenvalues of the (linearised) predictor W_p, descending",
            "1",
            {"bn_mode": "eval", "data": "probe set (least-squares linearisation p ~ W_p z + b)"},
        ),
        ResultVar(
            "pred_commutator",
            ("epoch",),
            "||F W_p - W_p F||_F / (||F||_F ||W_p||_F), 0 when they share eigenvectors",
            "1",
            F_AND_W,
        ),
        ResultVar(
            "pred_asymmetry",
            ("epoch",),
            "||W_p - W_p^T||_F / ||W_p||_F of the (linearised) predictor",
            "1",
            PROBE_SET,
        ),
    )
    epoch_every: int = 1
    step_every: int = 1
    rho: float = 0.3
    top: int = 16
    skip: bool = False
    last_epoch: int = 0  # the run's, where max_steps cuts it too (0: unknown, F always kept)
    _corr: Tensor | None = None
    _epoch: int = -1
    _gram: Tensor | None = None  # scratch: this step's z^T z (float32)
    _scaled: Tensor | None = None  # scratch: (1 - rho) z^T z / n (float64)

    @classmethod
    def build(cls, ctx: HookContext) -> "PredictorAlignmentHook":
        """F every ``correlation_every_steps``; alignment on ``predictor_every_epochs``."""
        cfg = ctx.cfg
        return cls(
            ctx.every(cfg.predictor_every_epochs),
            cfg.correlation_every_steps,
            cfg.correlation_rho,
            cfg.predictor_top,
            skip=not ctx.predictor_has_parameters,
            last_epoch=ctx.final_epoch,
        )

    def _wanted(self, epoch0: int) -> bool:
        """F of epoch ``epoch0`` (0-based) is read only if its epoch part is due."""
        epoch = epoch0 + 1
        last = self.last_epoch
        return not last or epoch_due(epoch, epoch == last, self.epoch_every)

    def on_step(self, view: StepView) -> Values:
        if self.skip or not self._wanted(view.epoch):  # F restarts every epoch: exact
            return {}
        if view.epoch != self._epoch:  # F restarts every epoch
            self._corr, self._epoch = None, view.epoch
        z = torch.cat([view.output.z1, view.output.z2]).float()  # (2B, d)
        n, d = z.shape
        if self._gram is None or self._gram.shape != (d, d) or self._gram.device != z.device:
            self._gram = z.new_empty(d, d)  # (d, d) float32
            self._scaled = z.new_empty(d, d, dtype=torch.float64)  # (d, d)
        torch.mm(z.T, z, out=self._gram)
        if self._corr is None:
            self._corr = self._gram.double().div_(n)  # (d, d), own storage
            return {}
        # rho F + (1 - rho) (z^T z / n), op by op as written (the same bits), but in
        # place: fresh (d, d) float64 results cost page faults, more than the matmul
        scaled = self._scaled
        assert scaled is not None
        scaled.copy_(self._gram)
        if n & (n - 1):
            scaled.div_(n).mul_(1 - self.rho)
        else:  # n = 2^k: x / n is exact, so x (1 - rho) / n rounds as (x / n) (1 - rho)
            scaled.mul_((1 - self.rho) / n)
        self._corr = self._corr.to(z.device).mul_(self.rho).add_(scaled)
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The epoch's running F (for a mid-epoch checkpoint; a copy: F updates in place)."""
        corr = None if self._corr is None else self._corr.detach().cpu().clone()
        return {"corr": corr, "epoch": self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a copy of its F, which then updates in place)."""
        corr = state["corr"]
        self._corr = None if corr is None else corr.clone()
        self._epoch = int(state["epoch"])

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> Values:
        corr = self._corr if self._epoch == view.epoch - 1 else None  # this epoch's F only
        if corr is None or self.skip:
            return {}
        probe = probes.get("probe")
        if probe.z.shape[0] <= probe.z.shape[1]:
            return {}
        if not (torch.isfinite(corr).all() and torch.isfinite(probe.z).all()):
            return {}
        if not torch.isfinite(probe.p).all():
            return {}
        dev = probes.device
        try:
            w = linearise_streamed(probe.z.to(dev), probe.p.to(dev))  # (d, d)
            res = predictor_alignment(corr.to(dev), w, top=self.top)
        except torch.linalg.LinAlgError as exc:
            warnings.warn(f"predictor alignment skipped at epoch {view.epoch}: {exc}", stacklevel=2)
            return {}
        return {
            "pred_cosine": float(res["mean_cosine"]),
            "pred_cosines": _numpy(res["cosines"]),
            "pred_eigenvalues": _numpy(res["predictor_eigenvalues"]),
            "pred_commutator": float(res["commutator"]),
            "pred_asymmetry": float(res["asymmetry"]),
        }


def _numpy(x: object) -> np.ndarray:
    """A float64 numpy copy of a tensor (from any device) or array."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)
