"""Per-kind configs of the backbone (``model.backbone`` and its sibling options).

Each class declares its name once, in ``kind``; :data:`BACKBONE_CONFIGS` is the list of
allowed names, and :mod:`siamlab.models.backbones` registers a builder under each.
"""

from typing import Literal

from pydantic import Field

from siamlab.config.kinds import KindConfig, kind_registry


class BackboneConfig(KindConfig):
    """Common base: the backbone's registered name."""

    kind: str

    @property
    def feature_dim(self) -> int:
        """Width C of the pooled features h (B, C) the backbone returns."""
        raise NotImplementedError


class ConvnetSmallConfig(BackboneConfig):
    """Four conv-BN-ReLU stages and global pooling, for CPU runs and tests.

    Attributes:
        width: channels of the first stage; the stages have w, 2w, 4w, 8w.
    """

    kind: Literal["convnet_small"] = "convnet_small"
    width: int = Field(default=32, gt=0)

    @property
    def feature_dim(self) -> int:
        """8 x width."""
        return 8 * self.width


class ResNetConfig(BackboneConfig):
    """A torchvision ResNet without its fc ("pool5" features, paper Sec. 3).

    Attributes:
        cifar_stem: 3x3 stride-1 first conv and no max-pool (supplement D).
        zero_init_residual: zero-init the last BN gamma of each residual block.
    """

    cifar_stem: bool = False
    zero_init_residual: bool = True

    @property
    def feature_dim(self) -> int:
        """512 for the basic-block ResNets, 2048 for the bottleneck ones."""
        return 512


class ResNet18Config(ResNetConfig):
    """ResNet-18 (the paper's CIFAR-10 backbone, supplement D)."""

    kind: Literal["resnet18"] = "resnet18"


class ResNet34Config(ResNetConfig):
    """ResNet-34."""

    kind: Literal["resnet34"] = "resnet34"


class ResNet50Config(ResNetConfig):
    """ResNet-50 (the paper's ImageNet backbone, Sec. 3)."""

    kind: Literal["resnet50"] = "resnet50"

    @property
    def feature_dim(self) -> int:
        """2048 (bottleneck blocks)."""
        return 2048


BACKBONE_CONFIGS = kind_registry(
    "backbone",
    "kind",
    [ConvnetSmallConfig, ResNet18Config, ResNet34Config, ResNet50Config],
)
