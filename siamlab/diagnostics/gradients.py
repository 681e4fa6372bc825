"""Gradient norms per network part: where the learning signal goes.

Without stop-gradient the loss can be lowered by collapsing the encoder, and its gradient
concentrates in the projector/backbone; with it, the predictor absorbs part of the signal
(Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, Sec. 5; Tian,
Chen & Ganguli, "Understanding Self-supervised Learning Dynamics without Contrastive
Pairs", ICML 2021, Sec. 3). A per-module norm over steps shows which part still learns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

MODULES: tuple[str, ...] = ("backbone", "projector", "predictor")


def grad_norm(module: nn.Module | None) -> float:
    """l2 norm of the gradients held by ``module``'s parameters.

    ``sqrt(sum_k ||grad_k||^2)`` over the parameters whose ``.grad`` is set. A module with
    no parameter holding a gradient (an ``nn.Identity`` predictor, a frozen one, or
    ``None``) gives NaN rather than 0, so "no gradient" is not mistaken for "zero gradient".

    Args:
        module: The module whose parameters' ``.grad`` are read (not modified).

    Returns:
        The norm as a float, or NaN.

    """
    if module is None:
        return math.nan
    grads = [p.grad.detach() for p in module.parameters() if p.grad is not None]
    if not grads:
        return math.nan
    norms = torch._foreach_norm(grads)  # one norm per parameter tensor
    return float(torch.linalg.vector_norm(torch.stack(norms).float()).item())


def module_grad_norms(model: nn.Module, names: Sequence[str] = MODULES) -> list[float]:
    """Gradient norms of the named sub-modules of ``model`` (NaN where absent).

    Args:
        model: A network with attributes such as ``backbone``, ``projector``, ``predictor``.
        names: Attribute names of the sub-modules, in output order.

    Returns:
        One value per name, shape ``(len(names),)`` as a list.

    """
    out: list[float] = []
    for name in names:
        sub = getattr(model, name, None)
        out.append(grad_norm(sub if isinstance(sub, nn.Module) else None))
    return out
