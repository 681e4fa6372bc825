"""SGD with the paper's parameter groups and learning-rate schedule.

Paper Sec. 3: "We use SGD for pre-training. Our method does not require a
large-batch optimizer ... with a base lr = 0.05. The learning rate is lr x BatchSize/256
... cosine decay schedule ... weight decay 0.0001 and SGD momentum 0.9."
"""

import math

import torch
from torch import nn

from siamlab.train.config import OptimConfig


def initial_lr(cfg: OptimConfig, batch_size: int) -> float:
    """Linear scaling rule: lr = base_lr x batch / 256."""
    return cfg.base_lr * batch_size / 256


def create_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int) -> torch.optim.SGD:
    """SGD over all parameters (BN and biases included, as the paper).

    Two groups, ``encoder`` and ``predictor``, so the predictor's lr can be held
    fixed (``fix_pred_lr``, Table 1c). Each group remembers whether it decays.
    """
    lr = initial_lr(cfg, batch_size)
    pred = [
        p for n, p in model.named_parameters() if n.startswith("predictor.") and p.requires_grad
    ]
    enc = [
        p for n, p in model.named_parameters() if not n.startswith("predictor.") and p.requires_grad
    ]
    groups = [
        {"params": enc, "name": "encoder", "fixed_lr": False},
        {"params": pred, "name": "predictor", "fixed_lr": cfg.fix_pred_lr},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(cfg: OptimConfig, step: int, epoch: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the initial lr at 0-based ``step`` (within 0-based ``epoch``).

    ``update="epoch"`` reproduces the reference code: lr x 0.5 (1 + cos(pi epoch/epochs)),
    set once at the start of each epoch. ``update="step"`` decays smoothly per step.
    """
    if cfg.schedule == "constant":
        return 1.0
    progress = epoch / epochs if cfg.update == "epoch" else step / (steps_per_epoch * epochs)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, base: float, factor: float) -> float:
    """Set every decaying group's lr to base x factor; fixed groups keep ``base``.

    Returns:
        The encoder's lr.
    """
    for group in optimizer.param_groups:
        group["lr"] = base if group.get("fixed_lr") else base * factor
    return base * factor
