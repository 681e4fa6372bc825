"""Gradient norms per network part: where the learning signal goes.

Without stop-gradient the loss can be lowered by collapsing the encoder, and its gradient
concentrates in the projector/backbone; with it, the predictor absorbs part of the signal
(Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, Sec. 5; Tian,
Chen & Ganguli, "Understanding Self-supervised Learning Dynamics without Contrastive
Pairs", ICML 2021, Sec. 3). A per-module norm over steps shows which part still learns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from siamlab.train.views import MODULES


def grad_norm(grads: Sequence[torch.Tensor]) -> float:
    """l2 norm ``sqrt(sum_k ||grad_k||^2)`` of a part's gradient tensors.

    A part with no gradient tensor (an ``nn.Identity`` predictor, a frozen one, or a
    missing part) gives NaN rather than 0, so "no gradient" is not mistaken for "zero
    gradient".

    Args:
        grads: The part's detached ``.grad`` tensors (read, not modified).

    Returns:
        The norm as a float, or NaN.

    """
    if not grads:
        return math.nan
    norms = torch._foreach_norm(list(grads))  # one norm per parameter tensor
    return float(torch.linalg.vector_norm(torch.stack(norms).float()).item())


def module_grad_norms(
    gradients: Mapping[str, Sequence[torch.Tensor]], names: Sequence[str] = MODULES
) -> list[float]:
    """Gradient norms of the named parts (NaN where absent or without gradient).

    The values of :func:`grad_norm` per part, with one ``_foreach_norm`` over every
    part's tensors and one move to the host (one device sync, not one per part).

    Args:
        gradients: part name -> its gradient tensors (:attr:`StepView.gradients`).
        names: The parts, in output order.

    Returns:
        One value per name, shape ``(len(names),)`` as a list.

    """
    parts = [list(gradients.get(name, ())) for name in names]
    flat = [g for part in parts for g in part]
    if not flat:
        return [math.nan] * len(names)
    norms = torch._foreach_norm(flat)  # one norm per parameter tensor
    totals: list[torch.Tensor] = []
    start = 0
    for part in parts:
        if part:
            mine = norms[start : start + len(part)]
            totals.append(torch.linalg.vector_norm(torch.stack(mine).float()))
            start += len(part)
    host = iter(torch.stack(totals).tolist()) if totals else iter(())
    return [next(host) if part else math.nan for part in parts]
