"""The Siamese network of SimSiam (paper Fig. 1): encoder f and predictor h.

f = backbone + projector. Optionally a momentum target gives the targets (BYOL).
A plain nn.Module: it knows nothing of losses or training.
"""

from typing import NamedTuple

import torch
from torch import nn

from siamlab.models.backbones import create_backbone
from siamlab.models.config import ModelConfig
from siamlab.models.heads import create_predictor, create_projector
from siamlab.models.set_predictor import SetPredictor
from siamlab.models.target import MomentumTarget


class SiameseOutput(NamedTuple):
    """What one forward pass over two views returns.

    h: backbone features (B, C); z: projector outputs (B, d); p: predictions (B, d);
    t: the targets (B, d) — z itself for SimSiam (None), the momentum encoder's
    output when there is one.
    """

    h1: torch.Tensor
    h2: torch.Tensor
    z1: torch.Tensor
    z2: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor
    t1: torch.Tensor | None = None
    t2: torch.Tensor | None = None

    def targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(t1, t2): the momentum targets, or z1, z2 when the encoder is its own target."""
        if self.t1 is None or self.t2 is None:
            return self.z1, self.z2
        return self.t1, self.t2


class Embedding(NamedTuple):
    """One view's h (B, C), z (B, d) and p (B, d)."""

    h: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor


class SiameseNet(nn.Module):
    """Backbone, projector, predictor and (if momentum > 0) a momentum target.

    Args:
        cfg: the model configuration.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.backbone = create_backbone(cfg.backbone)
        self.projector = create_projector(cfg.projector, self.backbone.feature_dim, cfg.dim)
        self.predictor = create_predictor(cfg.predictor, cfg.dim)
        self.target: MomentumTarget | None = None
        if cfg.target.momentum > 0:
            self.target = MomentumTarget(self.backbone, self.projector)

    def embed(self, x: torch.Tensor) -> Embedding:
        """Encode one batch of views (B, 3, H, W)."""
        h = self.backbone(x)  # (B, C)
        z = self.projector(h)  # (B, d)
        p = self.predictor(z)  # (B, d)
        return Embedding(h, z, p)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SiameseOutput:
        """Encode both views separately (each with its own BN batch statistics)."""
        e1, e2 = self.embed(x1), self.embed(x2)
        t1 = t2 = None
        if self.target is not None:
            t1, t2 = self.target(x1), self.target(x2)
        return SiameseOutput(e1.h, e2.h, e1.z, e2.z, e1.p, e2.p, t1, t2)

    def update_target(self, momentum: float) -> None:
        """One EMA step of the momentum target (no-op without one)."""
        if self.target is not None:
            self.target.update(self.backbone, self.projector, momentum)

    def update_predictor(self, z1: torch.Tensor, z2: torch.Tensor, step: int) -> None:
        """Refresh a set predictor (DirectPred, DirectCopy) from a step's z (B, d); else no-op.

        Args:
            z1: the online z of the first views (B, d).
            z2: the online z of the second views (B, d).
            step: the 1-based step just taken.
        """
        if isinstance(self.predictor, SetPredictor):
            self.predictor.update(z1, z2, step)


def create_model(cfg: ModelConfig) -> SiameseNet:
    """Build the Siamese network described by ``cfg``."""
    return SiameseNet(cfg)
