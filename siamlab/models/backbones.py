"""Backbones: torchvision ResNets (optionally with the CIFAR stem) and a small convnet.

Every backbone maps images (B, 3, H, W) to pooled features h (B, C) and exposes
``feature_dim`` = C and its stages (:meth:`Backbone.stages`: the sub-modules whose
outputs, input to output, are the feature maps of successive resolutions; the
last one's global average is h). Registered by name in ``BACKBONES`` (the names of
:data:`~siamlab.models.backbone_config.BACKBONE_CONFIGS`); ``create_backbone`` builds one.
"""

from collections.abc import Callable, Sequence

import torch
import torchvision
from torch import nn

from siamlab.models.backbone_config import BackboneConfig, ConvnetSmallConfig, ResNetConfig
from siamlab.registry import Registry


class Backbone(nn.Module):
    """A feature extractor with a known output width.

    Args:
        body: module mapping (B, 3, H, W) -> (B, C).
        feature_dim: C.
        stage_paths: the stages' sub-module names inside ``body`` (``get_submodule``
            paths), input to output; each maps to (B, C_k, H_k, W_k).
    """

    def __init__(self, body: nn.Module, feature_dim: int, stage_paths: Sequence[str]) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.stage_paths = tuple(stage_paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features (B, C)."""
        return self.body(x)

    def stages(self) -> list[nn.Module]:
        """The stage modules, input to output (their outputs: (B, C_k, H_k, W_k))."""
        return [self.body.get_submodule(path) for path in self.stage_paths]


def _resnet(arch: str, cfg: ResNetConfig) -> Backbone:
    """A torchvision ResNet with its fc removed ("pool5" features).

    The CIFAR variant replaces the 7x7 stride-2 stem with a 3x3 stride-1 conv and
    drops the max-pool, as in the paper's supplement D.
    """
    net = getattr(torchvision.models, arch)(weights=None, zero_init_residual=cfg.zero_init_residual)
    if cfg.cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return Backbone(net, feature_dim, RESNET_STAGES)


# torchvision's residual stages (conv2_x..conv5_x of He et al., CVPR 2016, Table 1)
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


BACKBONES: Registry[Callable[[BackboneConfig], Backbone]] = Registry("backbone")


@BACKBONES.register("convnet_small")
def _convnet_small(cfg: BackboneConfig) -> Backbone:
    """Four conv-BN-ReLU stages and global average pooling, for CPU runs and tests."""
    assert isinstance(cfg, ConvnetSmallConfig)
    w = cfg.width
    chans = [3, w, 2 * w, 4 * w, 8 * w]
    layers: list[nn.Module] = []
    for i in range(4):
        stride = 1 if i == 0 else 2
        layers += [
            nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(chans[i + 1]),
            nn.ReLU(inplace=True),
        ]
    body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 8w)
    return Backbone(body, chans[-1], [str(3 * i + 2) for i in range(4)])  # each block's ReLU


@BACKBONES.register("resnet18")
@BACKBONES.register("resnet34")
@BACKBONES.register("resnet50")
def _torchvision_resnet(cfg: BackboneConfig) -> Backbone:
    """The torchvision ResNet of the same name."""
    assert isinstance(cfg, ResNetConfig)
    return _resnet(cfg.kind, cfg)


def create_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone registered as ``cfg.kind`` (the config's ``model.backbone``)."""
    return BACKBONES.get(cfg.kind)(cfg)
