"""LARS (You et al. 2017), for large-batch pre-training and the linear probe.

As the SimSiam reference code: "no rate scaling or weight decay for parameters <= 1D".
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio.

    For a parameter w with ndim > 1 and gradient g: u = g + wd w, then
    u <- u x eta ||w|| / ||u|| (1 where either norm is 0); 1-D parameters (biases,
    BN) use u = g unchanged. Then mu <- momentum mu + u and w <- w - lr mu.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        weight_decay: applied to parameters with ndim > 1 only.
        momentum: heavy-ball momentum.
        trust_coefficient: eta.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply one update to every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    w_norm, u_norm = torch.norm(p), torch.norm(update)
                    one = torch.ones_like(w_norm)
                    ratio = torch.where(
                        (w_norm > 0) & (u_norm > 0),
                        group["trust_coefficient"] * w_norm / u_norm,
                        one,
                    )
                    update = update.mul(ratio)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(update)
                p.add_(mu, alpha=-group["lr"])
        return loss
