"""The SimSiam objective (paper Sec. 3, Eq. 1-4) and its ablations, as small pure functions.

The stop-gradient is decided in exactly one place, :func:`stop_gradient`, for every
kind of target (plain z, the momentum target's output, cached eta, moving-average eta).
"""

from collections.abc import Callable
from typing import NamedTuple

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
    return unit_negative_cosine(F.normalize(p, dim=1), F.normalize(z, dim=1))


def unit_negative_cosine(pn: torch.Tensor, zn: torch.Tensor) -> torch.Tensor:
    """:func:`negative_cosine` of rows already l2-normalised (B, d): ``-<pn, zn>``, batch mean."""
    return -(pn * zn).sum(dim=1).mean()


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


def stop_gradient(t: torch.Tensor, stop_grad: bool) -> torch.Tensor:
    """The target branch: "stopgrad(z) ... z is treated as a constant" (paper Eq. 3).

    The only function that decides whether gradient flows into a target, whatever the
    target is (see :meth:`SiameseOutput.targets` and :mod:`siamlab.eta`):

    - plain z (SimSiam, ``stop_grad`` False is the collapsing control of Fig. 2): the
      online encoder's output, so detaching here is what blocks the gradient;
    - the momentum target's output (m > 0): frozen parameters, no graph by construction;
    - cached / moving-average eta (paper Sec. 5): stored values from an earlier pass,
      no graph by construction.

    For the last two ``stop_grad=False`` cannot mean anything, and
    :class:`~siamlab.config.schema.RunConfig` refuses it.

    Args:
        t: a target (B, d).
        stop_grad: treat it as a constant.
    """
    return t.detach() if stop_grad else t


class LossTerms(NamedTuple):
    """The loss and the l2-normalised rows its cosine compared.

    ``unit_rows``: ``SiameseOutput`` field (``p1``, ``t2``, ...) -> ``F.normalize(x, dim=1)``
    of that tensor as the loss computed it (B, d), with its graph; empty for the
    cross-entropy similarity. Observers of the step reuse them, detached, instead of
    normalising the same rows again (:meth:`siamlab.train.views.StepView.unit_rows`).
    """

    loss: torch.Tensor
    unit_rows: dict[str, torch.Tensor]


def simsiam_loss(out: SiameseOutput, cfg: ObjectiveConfig) -> torch.Tensor:
    """L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1)) (paper Eq. 4), or one direction only.

    For ``asymmetric_2x`` the batch already holds two pairs per image (see
    :class:`ObjectiveConfig`), so the loss is the asymmetric one over all pairs.
    """
    return simsiam_loss_terms(out, cfg).loss


def simsiam_loss_terms(out: SiameseOutput, cfg: ObjectiveConfig) -> LossTerms:
    """:func:`simsiam_loss` and, for the cosine, the unit rows it compared (:class:`LossTerms`).

    The same operations as ``SIMILARITIES[cfg.similarity]``, created in the same order,
    so the loss and its gradients have the same bits either way (``tests/test_objectives``).
    """
    t1, t2 = (stop_gradient(t, cfg.stop_grad) for t in out.targets())  # (B, d) each
    symmetric = cfg.symmetry == "symmetric"
    if cfg.similarity != "cosine":
        d = SIMILARITIES[cfg.similarity]
        loss = 0.5 * d(out.p1, t2) + 0.5 * d(out.p2, t1) if symmetric else d(out.p1, t2)
        return LossTerms(loss, {})
    rows = {"p1": F.normalize(out.p1, dim=1), "t2": F.normalize(t2, dim=1)}  # (B, d) each
    loss = unit_negative_cosine(rows["p1"], rows["t2"])
    if not symmetric:
        return LossTerms(loss, rows)
    half = 0.5 * loss  # before the second pair, as in 0.5 * d(p1, t2) + 0.5 * d(p2, t1)
    rows |= {"p2": F.normalize(out.p2, dim=1), "t1": F.normalize(t1, dim=1)}
    return LossTerms(half + 0.5 * unit_negative_cosine(rows["p2"], rows["t1"]), rows)
