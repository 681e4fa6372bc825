"""The paper's linear-probe path: augmented images through the frozen backbone every epoch.

SimSiam paper, "Linear evaluation" (and ``main_lincls.py`` of the reference code): train
augmentation RandomResizedCrop + horizontal flip, backbone in eval mode, validation on the
Resize + CenterCrop eval transform. Probe training is resumable: the classifier, optimizer
and epoch are written atomically after every epoch, and a re-run with the same recipe,
checkpoint and data resumes where it stopped (long ImageNet probes).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

from siamlab.atomic import atomic_write
from siamlab.data.sources import ImageSource
from siamlab.data.views import mix_seed
from siamlab.evaluation.features import assert_unchanged, extract_features, snapshot
from siamlab.evaluation.linear_probe import (
    ProbeRecipe,
    ProbeResult,
    batches,
    create_classifier,
    create_optimizer,
    evaluate_classifier,
    lr_at,
    train_step,
)
from siamlab.preemption import leave_signals_to_the_main_process


def probe_train_transform(
    size: int, mean: tuple[float, ...], std: tuple[float, ...], scale: tuple[float, float]
) -> T.Compose:
    """RandomResizedCrop(size, scale) + horizontal flip + normalise (reference code)."""
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=scale),
            T.RandomHorizontalFlip(),
            T.ToTensor(),  # (3, size, size) in [0, 1]
            T.Normalize(mean, std),
        ]
    )


class KeyedAugmented(Dataset[tuple[Tensor, int, int]]):
    """``(transform(image), label, i)`` with the randomness keyed by (seed, epoch, i).

    As :class:`siamlab.data.views.TwoViewDataset`: a resumed probe sees the same crops as an
    uninterrupted one, whatever the number of workers. Set ``epoch`` before each epoch.
    """

    def __init__(self, source: ImageSource, transform: Any, seed: int) -> None:
        self.source, self.transform, self.seed, self.epoch = source, transform, seed, 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        i = int(i)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(mix_seed("probe", self.seed, self.epoch, i))
            x = self.transform(self.source.image(i))  # (3, S, S)
        return x, int(self.source.targets[i]), i


def _load_state(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state if state.get("key") == key else None


def probe_augmented(
    backbone: nn.Module,
    train_set: KeyedAugmented,
    val_set: Dataset,
    num_classes: int,
    recipe: ProbeRecipe,
    device: torch.device,
    state_path: Path,
    key: dict[str, Any],
    num_workers: int = 0,
    progress: bool = True,
) -> ProbeResult:
    """Train and validate the probe on augmented images, resuming from ``state_path``.

    Args:
        backbone: the frozen feature extractor (B, 3, H, W) -> (B, C); kept in eval mode.
        train_set: training images under the probe's train augmentation.
        val_set: validation images under the eval transform.
        num_classes: number of labels.
        recipe: the probe's hyper-parameters (``recipe.path`` should be ``augmented``).
        device: where backbone and classifier run.
        state_path: file of the probe's per-epoch state.
        key: what identifies this probe besides the recipe (checkpoint, data); a state
            with a different key is ignored (and overwritten).
        num_workers: DataLoader workers for the augmented images.
        progress: show tqdm progress bars.

    Raises:
        BackboneChangedError: a backbone weight or BN statistic changed.
    """
    before = snapshot(backbone)
    backbone.eval()
    with torch.no_grad():
        x0 = val_set[0][0][None].to(device)  # (1, 3, S, S)
        feature_dim = int(backbone(x0).shape[1])
    fc = create_classifier(feature_dim, num_classes, recipe.seed).to(device)
    opt = create_optimizer(fc, recipe)
    full_key = {**key, "recipe": asdict(recipe)}
    start, train_top1 = 0, float("nan")
    state = _load_state(state_path, full_key)
    if state is not None:
        fc.load_state_dict(state["fc"])
        opt.load_state_dict(state["optimizer"])
        start, train_top1 = int(state["epoch"]), float(state["train_top1"])
    for epoch in range(start, recipe.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(recipe, epoch)
        train_set.epoch = epoch
        order = [b.tolist() for b in batches(len(train_set), recipe, epoch)]
        loader = DataLoader(
            train_set,
            batch_sampler=order,
            num_workers=num_workers,
            worker_init_fn=leave_signals_to_the_main_process,
        )
        desc = f"probe epoch {epoch + 1}/{recipe.epochs}"
        correct = 0
        for x, y, _ in tqdm(loader, total=len(order), desc=desc, disable=not progress, leave=False):
            with torch.no_grad():
                h = backbone(x.to(device))  # (B, C); eval mode: BN statistics stay frozen
            correct += train_step(fc, opt, h, y.to(device))
        train_top1 = correct / len(train_set)
        assert_unchanged(before, backbone)  # the reference's sanity_check, every epoch
        snap = {
            "key": full_key,
            "epoch": epoch + 1,
            "fc": fc.state_dict(),
            "optimizer": opt.state_dict(),
            "train_top1": train_top1,
        }
        atomic_write(state_path, lambda tmp, s=snap: torch.save(s, tmp))  # type: ignore[misc]
    xv, yv = extract_features(backbone, val_set, device, desc="val features", progress=progress)
    top1, top5 = evaluate_classifier(fc, xv.to(device), yv.to(device))
    assert_unchanged(before, backbone)
    return ProbeResult(top1, top5, train_top1, recipe.epochs, "augmented")
