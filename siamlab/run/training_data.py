"""A run's training data: two-view datasets, the keyed epoch sampler and its batches.

Built once per run by :func:`build_training_data`; :func:`siamlab.run.assemble.build_run`
trains on it, and :func:`siamlab.monitor.training_parts` hands the same batches to a
training loop of the caller's own, so both see the same images in the same order.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from siamlab.config.schema import RunConfig
from siamlab.data.batched import BatchedTwoViewDataset, with_batched_views
from siamlab.data.build import DataBundle, build_datasets
from siamlab.data.resident import training_batches, with_resident_views
from siamlab.data.view_memo import ViewMemo
from siamlab.data.views import EpochSampler, PairBatches
from siamlab.train.distributed import DistInfo
from siamlab.train.loop import Batch


@dataclass(frozen=True)
class TrainingData:
    """The datasets, the epoch sampler and the batches of one run.

    Attributes:
        data: the training views and the eval sets (kNN bank, test split).
        sampler: this process's share of each epoch's global batches.
        pairs: augmented pairs per image (2 for ``objective.symmetry=asymmetric_2x``).
        loader: yields ``(view1 (B, 3, S, S), view2, labels (B,), indices (B,))``: the
            DataLoader, or batches made on the training device (``data.device_resident``).
        memo: with resident views and the k-step eta, where its cache pass leaves the
            batches the loader takes (:mod:`siamlab.data.view_memo`); else None.
    """

    data: DataBundle
    sampler: EpochSampler
    pairs: int
    loader: Iterable[Batch]
    memo: ViewMemo | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Global batches in one epoch."""
        return self.sampler.num_batches

    def batches(self, epoch: int, start_batch: int = 0) -> Iterable[Batch]:
        """The batches of 0-based ``epoch`` from ``start_batch`` on (mid-epoch resume)."""
        self.data.train_views.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_batch)
        return self.loader


def build_training_data(
    cfg: RunConfig, seed: int, dist: DistInfo, device: torch.device
) -> TrainingData:
    """The training data of ``cfg`` at ``seed``: views keyed by (seed, epoch, image).

    Raises:
        DataError: the data is missing or malformed, or the batch exceeds the dataset.
    """
    pairs = 2 if cfg.objective.symmetry == "asymmetric_2x" else 1
    data = build_datasets(cfg.data, seed, pairs)
    data = with_batched_views(data, cfg.data, seed, pairs)  # as data.augment_batched says
    data = with_resident_views(data, cfg.data, device)  # as data.device_resident says
    n_images, batch = len(data.train_eval), cfg.train.batch_size
    sampler = EpochSampler(n_images, batch, seed, rank=dist.rank, world_size=dist.world_size)
    batches = PairBatches(sampler, pairs) if pairs > 1 else sampler
    resident = isinstance(data.train_views, BatchedTwoViewDataset) and data.train_views.resident
    memo = ViewMemo() if resident and cfg.objective.eta.mode == "cached" else None
    loader = training_batches(cfg.data, data.train_views, batches, device, memo)
    return TrainingData(data, sampler, pairs, loader, memo)
