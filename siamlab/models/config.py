"""Configuration of the Siamese network: backbone, projector and predictor."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackboneName = Literal["convnet_small", "resnet18", "resnet34", "resnet50"]


class ProjectorConfig(BaseModel):
    """The projection MLP of the encoder f (paper Sec. 3, "Baseline settings").

    Attributes:
        layers: 3 for ImageNet, 2 for the CIFAR recipe (supplement D).
        hidden_dim: width of the hidden layers; None uses the backbone's feature
            dimension, as the reference code does (2048 for ResNet-50).
    """

    model_config = ConfigDict(extra="forbid")

    layers: Literal[2, 3] = 3
    hidden_dim: int | None = Field(default=None, gt=0)


class PredictorConfig(BaseModel):
    """The prediction MLP h: a 2-layer bottleneck, hidden = dim / 4 (paper Sec. 3).

    Attributes:
        hidden_dim: hidden width; None means dim // 4 (512 for d = 2048).
    """

    model_config = ConfigDict(extra="forbid")

    hidden_dim: int | None = Field(default=None, gt=0)


class ModelConfig(BaseModel):
    """Backbone + projector (the encoder f) and predictor h.

    Attributes:
        backbone: a registered backbone name.
        cifar_stem: 3x3 stride-1 first conv and no max-pool (supplement D).
        zero_init_residual: zero-init the last BN gamma of each residual block.
        width: channel width of ``convnet_small`` (ignored by ResNets).
        dim: output dimension d of the projector and predictor.
    """

    model_config = ConfigDict(extra="forbid")

    backbone: BackboneName = "resnet50"
    cifar_stem: bool = False
    zero_init_residual: bool = True
    width: int = Field(default=32, gt=0)
    dim: int = Field(default=2048, gt=0)
    projector: ProjectorConfig = ProjectorConfig()
    predictor: PredictorConfig = PredictorConfig()
