"""Linear evaluation of a frozen backbone (SimSiam paper, Sec. 4 / appendix A, "Linear evaluation").

Paper recipe: a linear classifier on the frozen pool5 features h, backbone in eval mode
(BN statistics frozen), fc init N(0, 0.01) and bias 0, LARS with lr = 0.02 x batch/256
(batch 4096), momentum 0.9, weight decay 0, cosine decay over 90 epochs; train augmentation
RandomResizedCrop + horizontal flip, validation Resize + CenterCrop; top-1 and top-5. The
reference code's default base lr is 0.1 (the authors say it works well in PyTorch).

Two paths:

- ``augmented``: the recipe above; features are recomputed every epoch from augmented
  images (:mod:`siamlab.evaluation.augmented_probe`, resumable).
- ``fast``: features of the train split are extracted once under the *eval* transform (no
  augmentation) and the classifier is trained on the cached features: seconds on a CPU.
  Typically a little below the augmented path; compare like with like (the path is recorded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from siamlab.data.views import mix_seed
from siamlab.errors import ConfigError
from siamlab.evaluation.features import assert_unchanged, extract_features, snapshot
from siamlab.train.lars import LARS


@dataclass(frozen=True)
class ProbeRecipe:
    """Hyper-parameters of the linear probe (defaults: the paper's).

    Attributes:
        path: ``fast`` (cached eval-transform features) or ``augmented`` (paper).
        optimizer: ``lars`` (paper) or ``sgd``.
        base_lr: lr = base_lr x batch_size / 256 (paper 0.02 with LARS; reference code 0.1).
        batch_size: the probe's batch (paper 4096).
        epochs: training epochs (paper 90), cosine decay per epoch as the reference code.
        momentum: SGD / LARS momentum.
        weight_decay: L2 penalty (paper 0).
        trust_coefficient: LARS trust coefficient (reference code 0.001).
        crop_scale: RandomResizedCrop scale range of the augmented path (torchvision default).
        seed: seeds the fc init, the batch order and the augmentations.
        standardize: fast path only: standardise each feature with the train features' mean
            and std before the classifier (a fixed affine map, so still a linear classifier
            on h; MAE's BN-without-affine probe). Not in the paper's recipe: it makes the
            probe insensitive to the features' scale, which on small data sets otherwise
            leaves the paper's LARS recipe far from converged.
    """

    path: Literal["fast", "augmented"] = "fast"
    optimizer: Literal["lars", "sgd"] = "lars"
    base_lr: float = 0.02
    batch_size: int = 4096
    epochs: int = 90
    momentum: float = 0.9
    weight_decay: float = 0.0
    trust_coefficient: float = 0.001
    crop_scale: tuple[float, float] = (0.08, 1.0)
    seed: int = 0
    standardize: bool = False

    def __post_init__(self) -> None:
        if self.path not in ("fast", "augmented") or self.optimizer not in ("lars", "sgd"):
            raise ConfigError("probe path must be fast|augmented and optimizer lars|sgd")
        if self.base_lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("probe base_lr must be > 0, batch_size and epochs >= 1")
        if self.standardize and self.path != "fast":
            raise ConfigError("feature standardisation is available on the fast path only")

    @property
    def lr(self) -> float:
        """The initial learning rate, base_lr x batch_size / 256."""
        return self.base_lr * self.batch_size / 256

    def describe(self) -> str:
        """One line saying the whole recipe (stored in the results' attrs)."""
        opt = self.optimizer + (
            f"(trust={self.trust_coefficient:g})" if self.optimizer == "lars" else ""
        )
        return (
            f"{opt} lr={self.base_lr:g}x{self.batch_size}/256={self.lr:g} "
            f"momentum={self.momentum:g} wd={self.weight_decay:g} cosine/epoch "
            f"epochs={self.epochs} batch={self.batch_size} path={self.path} seed={self.seed}"
            + (" standardized-features" if self.standardize else "")
        )


@dataclass(frozen=True)
class ProbeResult:
    """Validation top-1/top-5 (fractions), last-epoch train top-1, epochs run and the path."""

    top1: float
    top5: float
    train_top1: float
    epochs: int
    path: str


def create_classifier(in_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """The probe: Linear(in_dim, num_classes), weight ~ N(0, 0.01), bias 0 (reference code)."""
    fc = nn.Linear(in_dim, num_classes)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=torch.Generator().manual_seed(seed)))
        fc.weight.mul_(0.01)
        fc.bias.zero_()
    return fc


def create_optimizer(fc: nn.Module, recipe: ProbeRecipe) -> torch.optim.Optimizer:
    """LARS (paper) or SGD over the classifier's weight and bias."""
    if recipe.optimizer == "lars":
        return LARS(
            fc.parameters(),
            recipe.lr,
            recipe.momentum,
            recipe.weight_decay,
            recipe.trust_coefficient,
        )
    return torch.optim.SGD(
        fc.parameters(), recipe.lr, recipe.momentum, weight_decay=recipe.weight_decay
    )


def lr_at(recipe: ProbeRecipe, epoch: int) -> float:
    """Cosine decay set once per 0-based epoch: lr x 0.5 (1 + cos(pi epoch / epochs))."""
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / recipe.epochs))


def topk_accuracy(logits: Tensor, labels: Tensor) -> tuple[float, float]:
    """Top-1 and top-min(5, C) accuracy of logits (N, C) against labels (N,)."""
    ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (N, <=5)
    hits = ranked == labels[:, None]  # (N, <=5)
    return float(hits[:, 0].float().mean()), float(hits.any(dim=1).float().mean())


def batches(n: int, recipe: ProbeRecipe, epoch: int) -> list[Tensor]:
    """The shuffled index batches of 0-based ``epoch``, keyed by (seed, epoch)."""
    g = torch.Generator().manual_seed(mix_seed("probe-order", recipe.seed, epoch))
    return list(torch.randperm(n, generator=g).split(recipe.batch_size))


def train_step(fc: nn.Module, opt: torch.optim.Optimizer, h: Tensor, y: Tensor) -> int:
    """One cross-entropy step of the classifier on features h (B, C); returns # correct."""
    logits = fc(h)  # (B, num_classes)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return int((logits.argmax(1) == y).sum())


def train_on_features(
    x: Tensor, y: Tensor, num_classes: int, recipe: ProbeRecipe, progress: bool = True
) -> tuple[nn.Linear, float]:
    """Train the probe on cached features x (N, C) with labels y (N,) on x's device.

    Returns:
        The trained classifier (on raw features; a standardisation is folded into it) and
        its train top-1 over the last epoch.
    """
    mu = x.mean(0) if recipe.standardize else torch.zeros(x.shape[1], device=x.device)  # (C,)
    sd = x.std(0).clamp_min(1e-6) if recipe.standardize else torch.ones_like(mu)  # (C,)
    xs = (x - mu) / sd  # (N, C)
    fc = create_classifier(x.shape[1], num_classes, recipe.seed).to(x.device)
    opt = create_optimizer(fc, recipe)
    correct = 0
    for epoch in tqdm(range(recipe.epochs), desc="linear probe", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = lr_at(recipe, epoch)
        correct = sum(train_step(fc, opt, xs[i], y[i]) for i in batches(len(x), recipe, epoch))
    with torch.no_grad():  # W((x - mu) / sd) + b = (W / sd) x + (b - (W / sd) mu)
        fc.weight.div_(sd)
        fc.bias.sub_(fc.weight @ mu)
    return fc, correct / len(x)


@torch.no_grad()
def evaluate_classifier(fc: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Top-1 and top-5 of the classifier on features x (N, C), labels y (N,)."""
    return topk_accuracy(fc(x), y)


def probe_fast(
    backbone: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    num_classes: int,
    recipe: ProbeRecipe,
    device: torch.device,
    batch_size: int = 256,
    progress: bool = True,
) -> ProbeResult:
    """The fast path: extract features once (eval transform), train the probe on them."""
    before = snapshot(backbone)
    x, y = extract_features(
        backbone, train_set, device, batch_size, desc="train features", progress=progress
    )
    xv, yv = extract_features(
        backbone, val_set, device, batch_size, desc="val features", progress=progress
    )
    fc, train_top1 = train_on_features(x.to(device), y.to(device), num_classes, recipe, progress)
    top1, top5 = evaluate_classifier(fc, xv.to(device), yv.to(device))
    assert_unchanged(before, backbone)
    return ProbeResult(top1, top5, train_top1, recipe.epochs, "fast")
