"""The momentum (EMA) target encoder of BYOL, as an option (paper Sec. 6.1 / Table 4).

SimSiam is "BYOL without the momentum encoder": with m = 0 siamlab builds no copy at
all and the online encoder gives the targets. With m > 0 this module keeps
xi <- m xi + (1 - m) theta for backbone + projector and never receives gradients.
"""

import copy
import math

import torch
from torch import nn


class MomentumTarget(nn.Module):
    """An EMA copy of the encoder f = backbone + projector.

    Args:
        backbone: the online backbone (copied).
        projector: the online projector (copied).
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.projector = copy.deepcopy(projector).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Target z for a batch of views (B, 3, H, W) -> (B, d).

        No graph by construction: every parameter has ``requires_grad=False`` and the
        views need none; the loss's stop-gradient is decided elsewhere
        (:func:`siamlab.objectives.stop_gradient`).
        """
        return self.projector(self.backbone(x))

    @torch.no_grad()
    def update(self, backbone: nn.Module, projector: nn.Module, m: float) -> None:
        """EMA step: xi <- m xi + (1 - m) theta for parameters; BN buffers are copied."""
        for mine, online in ((self.backbone, backbone), (self.projector, projector)):
            for p_t, p_o in zip(mine.parameters(), online.parameters(), strict=True):
                p_t.mul_(m).add_(p_o.detach(), alpha=1.0 - m)
            for b_t, b_o in zip(mine.buffers(), online.buffers(), strict=True):
                b_t.copy_(b_o)


def momentum_at(base: float, schedule: str, step: int, total_steps: int) -> float:
    """Momentum after 0-based ``step``: constant, or BYOL's cosine increase towards 1."""
    if schedule == "constant" or total_steps <= 0:
        return base
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0
