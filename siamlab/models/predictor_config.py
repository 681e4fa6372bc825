"""Per-kind configs of the prediction head h (``model.predictor.kind``, paper Table 1).

Each class declares its name once, in ``kind``; :data:`PREDICTOR_CONFIGS` is the list of
allowed names, and :mod:`siamlab.models.heads` registers a builder under each.
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


PREDICTOR_CONFIGS = kind_registry(
    "predictor", "kind", [MlpPredictorConfig, LinearPredictorConfig, NoPredictorConfig]
)
