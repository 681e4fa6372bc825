"""Per-kind configs of the prediction head h (``model.predictor.kind``, paper Table 1).

Each class declares its name once, in ``kind``; :data:`PREDICTOR_CONFIGS` is the list of
allowed names, and :mod:`siamlab.models.heads` registers a builder under each. Besides the
paper's trained heads there are two linear heads that are set, not trained, from the
correlation of z: DirectPred and DirectCopy (:mod:`siamlab.models.set_predictor`).
"""

from typing import Literal

from pydantic import Field

from siamlab.config.kinds import KindConfig, kind_registry


class PredictorConfig(KindConfig):
    """Common base: the predictor's registered name."""

    kind: str


class MlpPredictorConfig(PredictorConfig):
    """The paper's 2-layer bottleneck MLP (Sec. 3).

    Attributes:
        hidden_dim: hidden width; None means dim // 4 (512 for d = 2048).
        trainable: False fixes h at its random init (Table 1b).
        bn_hidden: BN after the hidden Linear (Table 3).
        bn_output: BN after the output Linear (Table 3 row d: unstable).
    """

    kind: Literal["mlp"] = "mlp"
    hidden_dim: int | None = Field(default=None, gt=0)
    trainable: bool = True
    bn_hidden: bool = True
    bn_output: bool = False


class LinearPredictorConfig(PredictorConfig):
    """One d x d Linear (the DirectPred setting).

    Attributes:
        trainable: False fixes h at its random init (Table 1b).
        bn_output: BN after the Linear.
    """

    kind: Literal["linear"] = "linear"
    trainable: bool = True
    bn_output: bool = False


class NoPredictorConfig(PredictorConfig):
    """No predictor: h is the identity (Table 1a, collapses)."""

    kind: Literal["none"] = "none"


class SetPredictorConfig(PredictorConfig):
    """Common options of a linear head set from F, the EMA of the correlation E[z z^T].

    Attributes:
        rho: EMA decay, F <- rho F + (1 - rho) E_batch[z z^T] (Tian et al. use 0.3);
            the first update sets F to the first batch's correlation.
        eps: added to each eigenvalue of W_p (an isotropic floor; >= 0).
        update_every: recompute W_p from F after every this many steps (F itself is
            updated every step); 1 as in Tian et al.'s default.
    """

    rho: float = Field(default=0.3, ge=0.0, lt=1.0)
    eps: float = Field(default=0.01, ge=0.0)
    update_every: int = Field(default=1, gt=0)


class DirectPredConfig(SetPredictorConfig):
    """DirectPred (Tian, Chen & Ganguli, ICML 2021): W_p = U diag(sqrt(s / s_max) + eps) U^T.

    ``F = U diag(s) U^T`` in float64; see docs/paper-recipes.md#directpred-and-directcopy.
    """

    kind: Literal["directpred"] = "directpred"


class DirectCopyConfig(SetPredictorConfig):
    """DirectCopy (Wang, Chen, Du & Tian, 2021): W_p = F / ||F|| + eps I, no eigen-decomposition.

    Attributes:
        norm: ``frobenius`` (||F||_F, the cheap one) or ``spectral`` (the largest
            eigenvalue of F, the same scale as DirectPred's).
    """

    kind: Literal["directcopy"] = "directcopy"
    norm: Literal["frobenius", "spectral"] = "frobenius"


PREDICTOR_CONFIGS = kind_registry(
    "predictor",
    "kind",
    [
        MlpPredictorConfig,
        LinearPredictorConfig,
        NoPredictorConfig,
        DirectPredConfig,
        DirectCopyConfig,
    ],
)
