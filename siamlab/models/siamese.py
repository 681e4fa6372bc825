"""The Siamese network of SimSiam (paper Fig. 1): encoder f and predictor h.

f = backbone + projector. A plain nn.Module: it knows nothing of losses or training.
"""

from typing import NamedTuple

import torch
from torch import nn

from siamlab.models.backbones import create_backbone
from siamlab.models.config import ModelConfig
from siamlab.models.heads import create_predictor, create_projector


class SiameseOutput(NamedTuple):
    """What one forward pass over two views returns.

    h: backbone features (B, C); z: projector outputs (B, d); p: predictions (B, d).
    """

    h1: torch.Tensor
    h2: torch.Tensor
    z1: torch.Tensor
    z2: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor


class Embedding(NamedTuple):
    """One view's h (B, C), z (B, d) and p (B, d)."""

    h: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor


class SiameseNet(nn.Module):
    """Backbone, projector and predictor.

    Args:
        cfg: the model configuration.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.backbone = create_backbone(cfg)
        self.projector = create_projector(cfg.projector, self.backbone.feature_dim, cfg.dim)
        self.predictor = create_predictor(cfg.predictor, cfg.dim)

    def embed(self, x: torch.Tensor) -> Embedding:
        """Encode one batch of views (B, 3, H, W)."""
        h = self.backbone(x)  # (B, C)
        z = self.projector(h)  # (B, d)
        p = self.predictor(z)  # (B, d)
        return Embedding(h, z, p)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SiameseOutput:
        """Encode both views separately (each with its own BN batch statistics)."""
        e1, e2 = self.embed(x1), self.embed(x2)
        return SiameseOutput(e1.h, e2.h, e1.z, e2.z, e1.p, e2.p)


def create_model(cfg: ModelConfig) -> SiameseNet:
    """Build the Siamese network described by ``cfg``."""
    return SiameseNet(cfg)
