"""Optimiser, parameter groups and learning-rate schedule.

Paper Sec. 3: "We use SGD for pre-training. Our method does not require a
large-batch optimizer ... with a base lr = 0.05. The learning rate is lr x BatchSize/256
... cosine decay schedule ... weight decay 0.0001 and SGD momentum 0.9."
"""

import math

import torch
from torch import nn

from siamlab.train.config import OptimConfig
from siamlab.train.lars import LARS

# Devices with a fused SGD kernel: one pass over each parameter for the weight decay, the
# momentum and the update, against three kernels per tensor in torch's default on a CPU
# (the same bits there: tests/test_train.py; 2.6x faster at quick: README, "Speed").
FUSED_DEVICES = ("cpu", "cuda")


def initial_lr(cfg: OptimConfig, batch_size: int) -> float:
    """Linear scaling rule: lr = base_lr x batch / 256."""
    return cfg.base_lr * batch_size / 256


def create_optimizer(
    model: nn.Module, cfg: OptimConfig, batch_size: int, fused: bool = True
) -> torch.optim.Optimizer:
    """SGD (or LARS) over all trainable parameters (BN and biases included, as the paper).

    Two groups, ``encoder`` and ``predictor``, so the predictor's lr can be held
    fixed (Table 1c). A fixed predictor (Table 1b) has no trainable parameters and
    no group. A momentum target is never optimised. SGD runs torch's fused kernel on a
    CPU or a GPU (:data:`FUSED_DEVICES`), which computes what the reference code's
    ``torch.optim.SGD`` does with fewer passes over the parameters.

    Args:
        model: the network.
        cfg: the optimiser's settings.
        batch_size: for the linear scaling rule.
        fused: False = torch's default kernel: for a training loop of someone else's
            (:mod:`siamlab.monitor`), which may scale fp16 gradients with a GradScaler
            (whose skipped steps the fused kernel handles otherwise) or give a parameter
            its first gradient after the first step (the fused kernel then refuses the
            missing momentum buffer).
    """
    lr = initial_lr(cfg, batch_size)
    enc: list[nn.Parameter] = []
    pred: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (pred if name.startswith("predictor.") else enc).append(p)
    fixed = cfg.predictor_lr == "constant"
    groups = [
        {"params": enc, "name": "encoder", "fixed_lr": False},
        {"params": pred, "name": "predictor", "fixed_lr": fixed},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.name == "lars":
        return LARS(groups, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    fused = fused and all(p.device.type in FUSED_DEVICES for p in enc + pred)
    sgd = torch.optim.SGD(
        groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused
    )
    if fused:
        sgd.register_load_state_dict_post_hook(_keep_fused)
    return sgd


def _keep_fused(optimizer: torch.optim.Optimizer) -> None:
    """After a checkpoint is loaded: its groups' implementation flags yield to this one's.

    ``load_state_dict`` copies every group key, ``fused`` and ``foreach`` included, so a
    checkpoint of the per-tensor loop (siamlab before 2026-12-07) would resume on it; the
    two give the same bits, the fused kernel in ~40% of the time.
    """
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None


def lr_factor(cfg: OptimConfig, step: int, epoch: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the initial lr at 0-based ``step`` (within 0-based ``epoch``).

    Linear warm-up over ``warmup_epochs``, then ``update="epoch"`` reproduces the
    reference code, lr x 0.5 (1 + cos(pi epoch/epochs)) set once per epoch, and
    ``update="step"`` decays smoothly per step.
    """
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.update == "epoch":
        w = cfg.warmup_epochs
        progress = (epoch - w) / (epochs - w) if epochs > w else 1.0
    else:
        total = steps_per_epoch * epochs
        progress = (step - warmup) / (total - warmup) if total > warmup else 1.0
    return 0.5 * (1.0 + math.cos(math.pi * max(progress, 0.0)))


def set_lr(optimizer: torch.optim.Optimizer, base: float, factor: float) -> float:
    """Set every decaying group's lr to base x factor; fixed groups keep ``base``.

    Returns:
        The encoder's lr.
    """
    for group in optimizer.param_groups:
        group["lr"] = base if group.get("fixed_lr") else base * factor
    return base * factor
