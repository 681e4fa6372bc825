"""The SimSiam objective (paper Sec. 3, Eq. 1-4) and its ablations, as small pure functions.

The stop-gradient lives in exactly one place: :func:`target`.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from siamlab.config.objective import ObjectiveConfig
from siamlab.models.siamese import SiameseOutput

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -<p/||p||, z/||z||>, averaged over the batch (paper Eq. 1).

    Args:
        p: predictions (B, d).
        z: targets (B, d).

    Returns:
        A scalar tensor in [-1, 1].
    """
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1).mean()


def cross_entropy_similarity(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -softmax(z) . log softmax(p) over channels, batch mean (paper Sec. 4.5).

    Args:
        p: predictions (B, d), read as logits.
        z: targets (B, d), read as logits of the target distribution.
    """
    return -(F.softmax(z, dim=1) * F.log_softmax(p, dim=1)).sum(dim=1).mean()


SIMILARITIES: dict[str, Similarity] = {
    "cosine": negative_cosine,
    "cross_entropy": cross_entropy_similarity,
}


def target(z: torch.Tensor, stop_grad: bool) -> torch.Tensor:
    """The target branch: "stopgrad(z) ... z is treated as a constant" (paper Eq. 3)."""
    return z.detach() if stop_grad else z


def simsiam_loss(out: SiameseOutput, cfg: ObjectiveConfig) -> torch.Tensor:
    """L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1)) (paper Eq. 4), or one direction only.

    For ``asymmetric_2x`` the batch already holds two pairs per image (see
    :class:`ObjectiveConfig`), so the loss is the asymmetric one over all pairs.
    """
    d = SIMILARITIES[cfg.similarity]
    t1, t2 = out.targets()
    if cfg.symmetry == "symmetric":
        return 0.5 * d(out.p1, target(t2, cfg.stop_grad)) + 0.5 * d(
            out.p2, target(t1, cfg.stop_grad)
        )
    return d(out.p1, target(t2, cfg.stop_grad))
