"""The collapse verdict: one word per evaluated epoch and per run.

Five outcomes, from the signals of one epoch (no history, so a resumed run judges exactly
as an uninterrupted one):

* ``collapsed`` -- complete collapse: the loss is heading to -1 and the output is nearly
  constant: the eval-mode std of z/||z|| is ~0 (Chen & He, "Exploring Simple Siamese
  Representation Learning", CVPR 2021, Fig. 2) or the uniformity is ~0 (Wang & Isola,
  ICML 2020; it catches a collapse that eval-mode BN leaves with a mid-range std).
* ``dimensional_collapse`` -- the std looks healthy but the embedding occupies few
  dimensions: effective rank (Roy & Vetterli, EUSIPCO 2007) of z far below min(d, N)
  (Jing et al., "Understanding Dimensional Collapse in Contrastive Self-supervised
  Learning", ICLR 2022).
* ``unstable`` -- a non-finite loss or a loss oscillating from step to step (the paper's
  Table 3, BN on the predictor output); a run that diverged is ``unstable`` at the end.
* ``not_converging`` -- the loss stays high (the paper's fixed random predictor, Table 1b),
  or the output is constant without the loss having gone down (a network at init).
* ``healthy`` -- none of the above.

Thresholds live in :class:`~siamlab.diagnostics.config.VerdictConfig`; the order in which
they are checked is documented there. The std used is the eval-mode one: the projector's
output BN keeps the train-mode std of a batch away from 0 even while the network collapses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from siamlab.diagnostics.config import VerdictConfig
from siamlab.results.schema import ResultVar

if TYPE_CHECKING:
    from siamlab.diagnostics.hooks import HookContext

VERDICTS: tuple[str, ...] = (
    "healthy",
    "collapsed",
    "dimensional_collapse",
    "unstable",
    "not_converging",
)


def loss_jitter(losses: Sequence[float]) -> float:
    """Step-to-step noise of a loss series, insensitive to its smooth trend.

    ``sqrt(mean((L[t+1] - 2 L[t] + L[t-1])^2) / 6)``: for a smooth trend plus i.i.d. noise of
    std ``s`` the second differences have variance ``6 s^2``, so this estimates ``s``; a
    steadily falling loss gives ~0, a loss alternating by ``+-a`` gives ``4a/sqrt(6)``.

    Args:
        losses: Per-step losses of one epoch, in order, shape ``(T,)``.

    Returns:
        The jitter; NaN for fewer than 3 finite-or-not values (not judged), ``inf`` if any
        loss is not finite.

    """
    x = np.asarray(losses, dtype=np.float64)  # (T,)
    if x.size < 3:
        return math.inf if x.size and not np.isfinite(x).all() else math.nan
    if not np.isfinite(x).all():
        return math.inf
    second = x[2:] - 2.0 * x[1:-1] + x[:-2]  # (T - 2,)
    return float(np.sqrt(np.mean(second**2) / 6.0))


def judge(
    cfg: VerdictConfig,
    *,
    epoch_loss: float,
    std_sqrt_d: float,
    erank_fraction: float = math.nan,
    jitter: float = math.nan,
    uniformity: float = math.nan,
) -> str:
    """Classify one epoch (thresholds and order: :class:`VerdictConfig`).

    Args:
        cfg: The thresholds.
        epoch_loss: Mean training loss of the epoch (-1 = perfect match).
        std_sqrt_d: Eval-mode mean channel std of z/||z|| times sqrt(d); NaN = the
            embeddings were not finite (then the verdict is ``unstable``).
        erank_fraction: Effective rank of z over min(d, N); NaN = not measured (then
            dimensional collapse is not judged).
        jitter: :func:`loss_jitter` of the epoch; NaN = not measured, inf = NaN loss.
        uniformity: Uniformity of z/||z|| on the probe set; NaN = not measured.

    Returns:
        One of :data:`VERDICTS`.

    """
    if not (math.isfinite(epoch_loss) and math.isfinite(std_sqrt_d)):
        return "unstable"  # NaN loss, or non-finite embeddings (a numerical blow-up)
    if jitter > cfg.unstable_jitter:  # NaN (not measured) compares False
        return "unstable"
    constant = std_sqrt_d < cfg.collapsed_std or uniformity > cfg.collapsed_uniformity
    if constant and epoch_loss < cfg.collapsed_loss:
        return "collapsed"
    if constant or epoch_loss > cfg.not_converging_loss:
        return "not_converging"
    if erank_fraction < cfg.dimensional_erank_fraction:
        return "dimensional_collapse"
    return "healthy"


@dataclass
class VerdictJudge:
    """Summarises the monitor's values into ``loss_jitter`` and ``verdict`` per epoch.

    It sees every step's values (to collect the epoch's losses) and then the epoch's
    values from all hooks; it judges the epochs that have ``z_std_eval``. The std is
    scaled by sqrt(d) with d = the length of ``z_channel_std_eval``.

    The loss it judges is the paper's symmetric negative cosine: ``-pz_cosine_train`` when
    the batch-geometry hook measured it, so the thresholds mean the same for every
    objective (a cross-entropy loss lives near log d, not in [-1, 1]); the recorded
    ``loss``/``epoch_loss`` otherwise. For the default symmetric cosine objective the two
    are the same number.

    Attributes:
        cfg: The verdict thresholds.
        latest: The most recent verdict ("" before the first).
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "loss_jitter",
            ("epoch",),
            "step-to-step noise of the negative-cosine loss: RMS 2nd difference / sqrt(6)",
            "1",
        ),
        ResultVar(
            "verdict",
            ("epoch",),
            "collapse verdict: healthy | collapsed | dimensional_collapse | unstable | "
            "not_converging ('' where not judged); thresholds in the attrs and config",
            "1",
        ),
    )
    cfg: VerdictConfig
    latest: str = ""
    _losses: list[float] = field(default_factory=list)
    _cosine_losses: list[float] = field(default_factory=list)

    @classmethod
    def build(cls, ctx: HookContext) -> VerdictJudge:
        """With the thresholds of ``diagnostics.verdict``."""
        return cls(ctx.cfg.verdict)

    def summarise(self, scope: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Collect a step's loss, or judge an epoch from its values."""
        if scope == "step":
            if "loss" in values:
                self._losses.append(float(values["loss"]))
            if "pz_cosine_train" in values:
                self._cosine_losses.append(-float(values["pz_cosine_train"]))
            return {}
        losses, cosine_losses = self._losses, self._cosine_losses
        self._losses, self._cosine_losses = [], []
        finite = bool(np.isfinite(losses).all())
        judged = cosine_losses if cosine_losses and finite else losses
        jitter = loss_jitter(judged)
        out: dict[str, Any] = {"loss_jitter": jitter}
        if "z_std_eval" not in values or "epoch_loss" not in values:
            return out
        epoch_loss = float(np.mean(judged)) if judged is cosine_losses else values["epoch_loss"]
        dim = np.asarray(values.get("z_channel_std_eval", [0.0])).size
        self.latest = judge(
            self.cfg,
            epoch_loss=float(epoch_loss),
            std_sqrt_d=float(values["z_std_eval"]) * math.sqrt(dim),
            erank_fraction=float(values.get("z_erank_fraction", math.nan)),
            jitter=jitter,
            uniformity=float(values.get("z_uniformity", math.nan)),
        )
        out["verdict"] = self.latest
        return out

    def state_dict(self) -> dict[str, Any]:
        """The epoch's losses so far and the latest verdict (for a mid-epoch checkpoint)."""
        return {
            "losses": list(self._losses),
            "cosine_losses": list(self._cosine_losses),
            "latest": self.latest,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._losses = [float(x) for x in state["losses"]]
        self._cosine_losses = [float(x) for x in state.get("cosine_losses", [])]
        self.latest = str(state["latest"])


def verdict_attrs(last: object, status: str, cfg: VerdictConfig) -> dict[str, str | float]:
    """Dataset attrs: the run's final ``verdict`` and the thresholds that produced it.

    Args:
        last: The last recorded per-epoch verdict (``Recorder.last("verdict")``) or None.
        status: The run's status; ``diverged`` makes the final verdict ``unstable``.
        cfg: The thresholds, stored as ``verdict_<name>`` attrs.

    Returns:
        ``{"verdict": ..., "verdict_collapsed_std": 0.3, ...}``.

    """
    final = "unstable" if status == "diverged" else (last if isinstance(last, str) else "")
    thresholds = {f"verdict_{k}": float(v) for k, v in cfg.model_dump().items()}
    return {"verdict": final, **thresholds}
