"""The training batches alone, as ``siamlab bench`` times them: a DataLoader or resident batches.

With batched views (``data.augment_batched``) both paths are timed in the same process:
the run's own (the DataLoader, or batches made on the device with ``data.device_resident``)
and the other one, so their rates can be compared on a shared machine.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import torch

from siamlab.bench.measure import synchronize
from siamlab.config.study import RunSpec
from siamlab.data.batched import BatchedTwoViewDataset
from siamlab.data.build import DataBundle
from siamlab.data.resident import Batch, training_batches
from siamlab.data.views import EpochSampler, PairBatches


@dataclass
class LoaderRate:
    """The training batches alone: ``images`` in ``seconds`` after a first batch."""

    batches: int
    images: int
    seconds: float
    first_batch_s: float  # iterator start (workers) + first batch
    name: str = "data loader"  # or "device-resident batches" (data.device_resident)

    @property
    def rate(self) -> float:
        """Steady images per second (after the first batch)."""
        return self.images / self.seconds if self.seconds else float("nan")


def time_loader(
    data: DataBundle, spec: RunSpec, device: torch.device, batches: int, keep: int
) -> tuple[LoaderRate, list[Batch]]:
    """Iterate the run's training batches (epoch 0) alone; return their rate and ``keep`` batches.

    The batches come from the DataLoader, or are made on the device when the views are
    resident (``data.device_resident``), as in a run.
    """
    cfg = spec.config
    pairs = 2 if cfg.objective.symmetry == "asymmetric_2x" else 1
    sampler = EpochSampler(len(data.train_eval), cfg.train.batch_size, spec.seed)
    data.train_views.set_epoch(0)
    sampler.set_epoch(0)
    batch_sampler = PairBatches(sampler, pairs) if pairs > 1 else sampler
    loader = training_batches(cfg.data, data.train_views, batch_sampler, device)
    resident = isinstance(data.train_views, BatchedTwoViewDataset) and data.train_views.resident
    n = max(2, min(batches, len(sampler)))
    synchronize(device)
    t0 = time.perf_counter()
    it = iter(loader)
    pool: list[Batch] = [next(it)]
    synchronize(device)
    t1 = time.perf_counter()
    images = 0
    for b in itertools.islice(it, n - 1):
        images += b[0].shape[0]
        if len(pool) < keep:
            pool.append(b)
    synchronize(device)
    t2 = time.perf_counter()
    del it  # stop the workers before training is timed
    name = "device-resident batches" if resident else "data loader"
    return LoaderRate(n, images, t2 - t1, t1 - t0, name), pool


def other_path(data: DataBundle, device: torch.device) -> DataBundle | None:
    """Batched views: the same data with the other batch path (resident <-> DataLoader)."""
    views = data.train_views
    if not isinstance(views, BatchedTwoViewDataset):
        return None
    if views.resident:  # back to host images for a DataLoader
        return dataclasses.replace(data, train_views=views.on_device(torch.device("cpu"), False))
    return dataclasses.replace(data, train_views=views.on_device(device))
