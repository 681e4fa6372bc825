"""LARS: layer-wise adaptive rate scaling (You et al., 2017).

Used for large-batch pre-training (``optim.name: lars``) and the linear probe.

SimSiam paper, "Linear evaluation": the probe is trained with LARS, base lr 0.02 x batch/256,
momentum 0.9, weight decay 0, cosine schedule. The reference code wraps SGD in apex's
``LARC(trust_coefficient=0.001, clip=False)``. Per parameter tensor ``p`` with gradient ``g``::

    g' = g + wd * p
    q  = tc * ||p|| / (||g|| + wd * ||p|| + eps)   if ||p|| > 0 and ||g|| > 0, else 1
    mu = momentum * mu + q * g'                      (SGD momentum, no dampening)
    p  = p - lr * mu

With ``exclude_1d=True`` (the default, as in MoCo v3's LARS and most reproductions) biases
and other 1-D tensors skip the adaptation (``q = 1``); apex's LARC adapts them too once they
are nonzero (``exclude_1d=False``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is rescaled by the trust ratio ``q``.

    Args:
        params: the parameters (or parameter groups) to optimise.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        trust_coefficient: ``tc`` in the formula above (0.001 in the reference code).
        eps: added to the trust ratio's denominator.
        exclude_1d: give 1-D tensors (biases, BN) ``q = 1`` and no weight decay.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        exclude_1d: bool = True,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError("lr, momentum, weight_decay must be >= 0; trust_coefficient > 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "exclude_1d": exclude_1d,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Apply one update to every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            wd, tc, eps = group["weight_decay"], group["trust_coefficient"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["exclude_1d"] and p.ndim <= 1:
                    update = g
                else:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    q = torch.where(
                        (p_norm > 0) & (g_norm > 0),
                        tc * p_norm / (g_norm + wd * p_norm + eps),
                        torch.ones_like(p_norm),
                    )
                    update = g.add(p, alpha=wd).mul_(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu: Tensor = state["mu"]
                mu.mul_(group["momentum"]).add_(update)
                p.add_(mu, alpha=-group["lr"])
        return loss
