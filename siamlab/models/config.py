"""Configuration of the Siamese network: backbone, projector, predictor, momentum target.

The backbone (flat: ``model.backbone: resnet18`` with ``model.cifar_stem`` beside it)
and the predictor (nested: ``model.predictor.kind``) are per-kind configs
(:mod:`siamlab.config.kinds`): an option of another kind is an error naming its kind.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from siamlab.config.kinds import check_applies, flatten, kind_union, nest_flat
from siamlab.models.backbone_config import BACKBONE_CONFIGS, BackboneConfig, ResNet50Config
from siamlab.models.predictor_config import PREDICTOR_CONFIGS, MlpPredictorConfig, PredictorConfig

if TYPE_CHECKING:
    BackboneField = BackboneConfig
    PredictorField = PredictorConfig
else:
    BackboneField = kind_union(BACKBONE_CONFIGS, "kind", "resnet50")
    PredictorField = kind_union(PREDICTOR_CONFIGS, "kind", "mlp")

BnPreset = Literal["none", "hidden", "default", "all"]


class ProjectorConfig(BaseModel):
    """The projection MLP of the encoder f (paper Sec. 3, "Baseline settings").

    Attributes:
        layers: 3 for ImageNet, 2 for the CIFAR recipe (supplement D).
        hidden_dim: width of the hidden layers; None uses the backbone's feature
            dimension, as the reference code does (2048 for ResNet-50).
        bn_hidden: BN after each hidden Linear (Table 3).
        bn_output: BN after the output Linear (Table 3 row c).
        bn_output_affine: learnable scale/shift of that BN (off, as the reference code;
            Table 3 (c): 68.2 without, 68.1 with).
    """

    model_config = ConfigDict(extra="forbid")

    layers: Literal[2, 3] = 3
    hidden_dim: int | None = Field(default=None, gt=0)
    bn_hidden: bool = True
    bn_output: bool = True
    bn_output_affine: bool = False


class TargetConfig(BaseModel):
    """Where the targets z come from (BYOL-style momentum encoder, paper Sec. 6.1).

    Attributes:
        momentum: m = 0 is SimSiam: the target is the online encoder itself (no copy);
            m > 0 keeps an EMA copy of backbone + projector, xi <- m xi + (1 - m) theta,
            which gives the targets and never receives gradients.
        schedule: ``constant`` m, or ``cosine`` from m towards 1 as in BYOL:
            m_k = 1 - (1 - m) (cos(pi k / K) + 1) / 2. Applies to m > 0 only: set at
            m = 0 it is an error, and it is left out of the saved config there.
    """

    model_config = ConfigDict(extra="forbid")

    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    schedule: Literal["constant", "cosine"] = "constant"

    @model_validator(mode="after")
    def _check_schedule(self) -> "TargetConfig":
        if self.momentum == 0 and "schedule" in self.model_fields_set:
            raise ValueError(
                "model.target.schedule applies to a momentum target only (model.target.momentum "
                "is 0, SimSiam's own encoder): drop the schedule or set a momentum > 0"
            )
        return self

    @model_serializer(mode="wrap")
    def _drop_schedule(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.momentum == 0:
            out.pop("schedule", None)
        return out


# Table 3 rows: (proj hidden, proj output, pred hidden, pred output)
BN_PRESETS: dict[str, tuple[bool, bool, bool, bool]] = {
    "none": (False, False, False, False),  # (a)
    "hidden": (True, False, True, False),  # (b)
    "default": (True, True, True, False),  # (c), SimSiam
    "all": (True, True, True, True),  # (d)
}


class ModelConfig(BaseModel):
    """Backbone + projector (the encoder f), predictor h and the target branch.

    Attributes:
        backbone: the backbone's per-kind config; written flat in YAML
            (``backbone: convnet_small`` and ``width: 8`` beside it), see
            :mod:`siamlab.models.backbone_config` for each kind's options.
        dim: output dimension d of the projector and predictor (Appendix B).
        bn_preset: sets the BN flags of the heads to a row of Table 3 (``none`` (a),
            ``hidden`` (b), ``default`` (c), ``all`` (d)); None leaves the flags as
            given. A flag set explicitly to another value than the preset's is an error.
        projector: the projection MLP.
        predictor: the predictor's per-kind config (``kind: mlp | linear | none``).
        target: the momentum target.
    """

    model_config = ConfigDict(extra="forbid")

    backbone: BackboneField = Field(default_factory=ResNet50Config)
    dim: int = Field(default=2048, gt=0)
    bn_preset: BnPreset | None = None
    projector: ProjectorConfig = Field(default_factory=ProjectorConfig)
    predictor: PredictorField = Field(default_factory=MlpPredictorConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)

    @model_validator(mode="before")
    @classmethod
    def _nest_kinds(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = nest_flat(data, "backbone", BACKBONE_CONFIGS, "kind", "resnet50", "model.")
        predictor = data.get("predictor")
        if isinstance(predictor, Mapping):
            check_applies(
                predictor, PREDICTOR_CONFIGS, "kind", "mlp", "predictor.kind", "model.predictor."
            )
        return data

    @model_validator(mode="after")
    def _apply_bn_preset(self) -> "ModelConfig":
        if self.bn_preset is None:
            return self
        ph, po, qh, qo = BN_PRESETS[self.bn_preset]
        flags = [
            (self.projector, "projector", "bn_hidden", ph),
            (self.projector, "projector", "bn_output", po),
            (self.predictor, "predictor", "bn_hidden", qh),
            (self.predictor, "predictor", "bn_output", qo),
        ]
        for part, where, flag, value in flags:
            if flag not in type(part).model_fields:
                continue  # e.g. the identity predictor has no BN
            if flag in part.model_fields_set and getattr(part, flag) != value:
                raise ValueError(
                    f"model.bn_preset={self.bn_preset} sets model.{where}.{flag}={value}, but "
                    f"model.{where}.{flag}={getattr(part, flag)} is set too: drop one of the two"
                )
            setattr(part, flag, value)
        return self

    @model_serializer(mode="wrap")
    def _flat_backbone(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return flatten(handler(self), "backbone", "kind")
