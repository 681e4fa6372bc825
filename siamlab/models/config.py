"""Configuration of the Siamese network: backbone, projector, predictor, momentum target."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BackboneName = Literal["convnet_small", "resnet18", "resnet34", "resnet50"]
BnPreset = Literal["none", "hidden", "default", "all"]


class ProjectorConfig(BaseModel):
    """The projection MLP of the encoder f (paper Sec. 3, "Baseline settings").

    Attributes:
        layers: 3 for ImageNet, 2 for the CIFAR recipe (supplement D).
        hidden_dim: width of the hidden layers; None uses the backbone's feature
            dimension, as the reference code does (2048 for ResNet-50).
        bn_hidden: BN after each hidden Linear (Table 3).
        bn_output: BN after the output Linear (Table 3 row c).
        bn_output_affine: learnable scale/shift of that BN (the paper's default: off).
    """

    model_config = ConfigDict(extra="forbid")

    layers: Literal[2, 3] = 3
    hidden_dim: int | None = Field(default=None, gt=0)
    bn_hidden: bool = True
    bn_output: bool = True
    bn_output_affine: bool = False


class PredictorConfig(BaseModel):
    """The prediction MLP h (paper Sec. 3 and Table 1).

    Attributes:
        kind: ``mlp`` (2 layers, bottleneck), ``linear`` (one d x d Linear) or ``none``
            (identity, Table 1a).
        hidden_dim: hidden width of ``mlp``; None means dim // 4 (512 for d = 2048).
        trainable: False fixes h at its random init (Table 1b).
        bn_hidden: BN after the hidden Linear (Table 3).
        bn_output: BN after the output Linear (Table 3 row d: unstable).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mlp", "linear", "none"] = "mlp"
    hidden_dim: int | None = Field(default=None, gt=0)
    trainable: bool = True
    bn_hidden: bool = True
    bn_output: bool = False


class TargetConfig(BaseModel):
    """Where the targets z come from (BYOL-style momentum encoder, paper Sec. 6.1).

    Attributes:
        momentum: m = 0 is SimSiam: the target is the online encoder itself (no copy);
            m > 0 keeps an EMA copy of backbone + projector, xi <- m xi + (1 - m) theta,
            which gives the targets and never receives gradients.
        schedule: ``constant`` m, or ``cosine`` from m towards 1 as in BYOL:
            m_k = 1 - (1 - m) (cos(pi k / K) + 1) / 2.
    """

    model_config = ConfigDict(extra="forbid")

    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    schedule: Literal["constant", "cosine"] = "constant"


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
        backbone: a registered backbone name.
        cifar_stem: 3x3 stride-1 first conv and no max-pool (supplement D).
        zero_init_residual: zero-init the last BN gamma of each residual block.
        width: channel width of ``convnet_small`` (ignored by ResNets).
        dim: output dimension d of the projector and predictor (Appendix B).
        bn_preset: sets the four BN flags of the heads to a row of Table 3
            (``none`` (a), ``hidden`` (b), ``default`` (c), ``all`` (d)); None leaves
            the flags as given.
    """

    model_config = ConfigDict(extra="forbid")

    backbone: BackboneName = "resnet50"
    cifar_stem: bool = False
    zero_init_residual: bool = True
    width: int = Field(default=32, gt=0)
    dim: int = Field(default=2048, gt=0)
    bn_preset: BnPreset | None = None
    projector: ProjectorConfig = Field(default_factory=ProjectorConfig)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)

    @model_validator(mode="after")
    def _apply_bn_preset(self) -> "ModelConfig":
        if self.bn_preset is not None:
            ph, po, qh, qo = BN_PRESETS[self.bn_preset]
            self.projector.bn_hidden, self.projector.bn_output = ph, po
            self.predictor.bn_hidden, self.predictor.bn_output = qh, qo
        return self
