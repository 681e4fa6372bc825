"""Weighted kNN evaluation of a frozen backbone on any bank / query split.

The classifier is the training monitor's (:mod:`siamlab.diagnostics.knn`): InstDisc's
weighted kNN (Wu et al., CVPR 2018) on l2-normalised pool5 features, as the SimSiam paper's
Fig. 2 (right) kNN monitor: each query's ``k`` most cosine-similar bank entries vote with
weight ``exp(sim / T)``. By default the bank is the train split and the queries the test
split, both under the eval transform, model in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from siamlab.diagnostics.knn import knn_accuracy
from siamlab.errors import ConfigError
from siamlab.evaluation.features import assert_unchanged, extract_features, snapshot

SPLITS = ("train", "test")


@dataclass(frozen=True)
class KnnRecipe:
    """Settings of the kNN evaluation.

    Attributes:
        k: neighbours (InstDisc and the paper's monitor: 200).
        temperature: T of the vote weights (0.1 in CIFAR demos; the authors mention 0.2).
        bank: split whose features form the bank.
        queries: split whose samples are classified.
    """

    k: int = 200
    temperature: float = 0.1
    bank: str = "train"
    queries: str = "test"

    def __post_init__(self) -> None:
        if self.k < 1 or self.temperature <= 0:
            raise ConfigError(f"kNN needs k >= 1 and T > 0, got k={self.k} T={self.temperature}")
        if self.bank not in SPLITS or self.queries not in SPLITS:
            raise ConfigError(f"kNN bank and queries must be one of {SPLITS}")

    def describe(self) -> str:
        """One line saying the recipe (stored in the results' attrs)."""
        return f"weighted kNN (InstDisc) k={self.k} T={self.temperature:g} on l2-normalised h"


def knn_evaluate(
    backbone: nn.Module,
    splits: dict[str, Dataset],
    num_classes: int,
    recipe: KnnRecipe,
    device: torch.device,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, float]:
    """Top-1 and top-5 of the weighted kNN classifier on the backbone's features.

    Args:
        backbone: maps images (B, 3, H, W) to features (B, C); run in eval mode.
        splits: ``train`` and ``test`` datasets under the eval transform.
        num_classes: number of labels.
        recipe: k, T and which splits are bank and queries.
        device: where the backbone runs.
        batch_size: images per forward pass.
        progress: show tqdm progress bars.

    Returns:
        ``{"top1": ..., "top5": ...}`` as fractions. With bank == queries every query
        finds itself among its neighbours (a training-fit measure, not a held-out one).
    """
    before = snapshot(backbone)
    feats = {
        name: extract_features(
            backbone, splits[name], device, batch_size, desc=f"{name} features", progress=progress
        )
        for name in dict.fromkeys((recipe.bank, recipe.queries))
    }
    assert_unchanged(before, backbone)
    bank, bank_y = feats[recipe.bank]  # (M, C), (M,)
    queries, query_y = feats[recipe.queries]  # (Q, C), (Q,)
    return knn_accuracy(bank, bank_y, queries, query_y, num_classes, recipe.k, recipe.temperature)
