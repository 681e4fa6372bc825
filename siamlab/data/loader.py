"""The training DataLoader, with the tuning keys of :class:`~siamlab.data.config.DataConfig`.

``num_workers``, ``pin_memory``, ``prefetch_factor`` and ``persistent_workers`` are passed
to torch's DataLoader. Views are keyed by (seed, epoch, index) and the dataset learns the
epoch from ``set_epoch``; persistent workers hold their own copy of the dataset and would
keep the first epoch, so with them the epoch travels with each index instead
(:class:`EpochTagged` / :class:`EpochItems`), and the views stay the same as without.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from siamlab.data.config import DataConfig
from siamlab.data.views import TwoViewDataset
from siamlab.preemption import leave_signals_to_the_main_process

Item = tuple[torch.Tensor, torch.Tensor, int, int]  # view1 (3, S, S), view2, label, index


class EpochTagged(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)``: a batch sampler's indices with the dataset's epoch.

    Args:
        batches: the batch sampler (an EpochSampler or PairBatches).
        views: the dataset whose ``epoch`` (set by ``set_epoch`` in the main process)
            tags every index.
    """

    def __init__(self, batches: Sampler[list[int]], views: TwoViewDataset) -> None:
        super().__init__()
        self.batches, self.views = batches, views

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.views.epoch
        for batch in self.batches:
            yield [(epoch, k) for k in batch]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class EpochItems(Dataset[Item]):
    """Serves ``(epoch, index)`` keys from a two-view dataset (inside each worker)."""

    def __init__(self, views: TwoViewDataset) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, key: tuple[int, int]) -> Item:
        epoch, k = key
        self.views.set_epoch(epoch)
        return self.views[k]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Item]:
        """A batch of keys (one epoch): the dataset's own batched path when it has one."""
        self.views.set_epoch(keys[0][0])
        ks = [k for _, k in keys]
        many = getattr(self.views, "__getitems__", None)
        return list(many(ks)) if many is not None else [self.views[k] for k in ks]


def train_loader(
    cfg: DataConfig,
    views: TwoViewDataset,
    batches: Sampler[list[int]],
    device: torch.device,
) -> DataLoader[Any]:
    """The DataLoader of the training views.

    Args:
        cfg: ``num_workers``, ``pin_memory`` (None = on CUDA), ``prefetch_factor``
            and ``persistent_workers`` (both only with workers).
        views: the two-view dataset (PIL or batched path).
        batches: the batch sampler of global-batch shares.
        device: the training device (for the ``pin_memory`` default).

    Returns:
        A loader yielding ``(view1 (B, 3, S, S), view2, labels (B,), indices (B,))``.
    """
    workers = cfg.num_workers
    extra: dict[str, Any] = {}
    if workers and cfg.prefetch_factor is not None:
        extra["prefetch_factor"] = cfg.prefetch_factor
    dataset: Dataset[Any] = views
    sampler: Sampler[Any] = batches
    if workers and cfg.persistent_workers:
        extra["persistent_workers"] = True
        dataset, sampler = EpochItems(views), EpochTagged(batches, views)
    pin = device.type == "cuda" if cfg.pin_memory is None else cfg.pin_memory
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=leave_signals_to_the_main_process,
        **extra,
    )
