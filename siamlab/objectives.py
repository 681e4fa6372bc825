"""The SimSiam objective (paper Sec. 3, Eq. 1-4) as small pure functions.

The stop-gradient lives in exactly one place: :func:`target`.
"""

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from siamlab.models.siamese import SiameseOutput


class ObjectiveConfig(BaseModel):
    """How the two branches are compared.

    Attributes:
        stop_grad: treat z as a constant in D(p, z) (paper Eq. 3); False is the
            collapsing control of Fig. 2.
    """

    model_config = ConfigDict(extra="forbid")

    stop_grad: bool = True


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -<p/||p||, z/||z||>, averaged over the batch (paper Eq. 1).

    Args:
        p: predictions (B, d).
        z: targets (B, d).

    Returns:
        A scalar tensor in [-1, 1].
    """
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1).mean()


def target(z: torch.Tensor, stop_grad: bool) -> torch.Tensor:
    """The target branch: "stopgrad(z) ... z is treated as a constant" (paper Eq. 3)."""
    return z.detach() if stop_grad else z


def simsiam_loss(out: SiameseOutput, cfg: ObjectiveConfig) -> torch.Tensor:
    """L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1)) (paper Eq. 4)."""
    return 0.5 * negative_cosine(out.p1, target(out.z2, cfg.stop_grad)) + 0.5 * negative_cosine(
        out.p2, target(out.z1, cfg.stop_grad)
    )
