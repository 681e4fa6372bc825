"""Device-resident training data: batches made on the training device, in the training process.

For in-memory uint8 datasets (digits, npz, CIFAR) with the batched augmentation
(:mod:`siamlab.data.batched`), ``data.device_resident`` copies the uint8 images once to
the training device (CIFAR-10's 50,000 images are 150 MB); each step's batch is then an
index into them followed by the batched augmentation, run where the images are. There is
no DataLoader, no worker process and no host-to-device copy of float views; only the
keyed uniforms (B x 33 numbers per view) and a few index tensors cross from the host.

Nothing else changes: the batch sampler is the run's own
(:class:`~siamlab.data.views.EpochSampler`, sharded by rank), so under DDP every rank
augments its own share of each global batch and nothing else, and the draws are keyed by
(seed, epoch, image, pair, view) as on the loader path. The views are the batched
loader's: bit for bit on CPU (``tests/test_device_data.py``), up to the float rounding of
the GPU's kernels on CUDA.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Sampler

from siamlab.data.batched import BatchedTwoViewDataset
from siamlab.data.config import DataConfig
from siamlab.data.loader import train_loader
from siamlab.data.view_memo import Batch, ViewMemo
from siamlab.data.views import TwoViewDataset
from siamlab.errors import DataError
from siamlab.train.device import usable_cores

if TYPE_CHECKING:
    from siamlab.data.build import DataBundle

AUTO_MEMORY_SHARE = 0.25  # auto: the images may take at most this share of the free memory


class ResidentBatches:
    """The batches of a batch sampler, made by resident views; iterable once per epoch.

    Like a DataLoader, every ``iter`` walks the sampler as it is now (its epoch and first
    batch set by ``set_epoch``), and the views use the dataset's current epoch.

    Args:
        views: resident batched views (:meth:`BatchedTwoViewDataset.on_device`).
        batches: a batch sampler of flat indices (an EpochSampler or PairBatches).
        memo: batches the eta cache pass made already, taken instead of made again.
    """

    def __init__(
        self,
        views: BatchedTwoViewDataset,
        batches: Sampler[list[int]],
        memo: ViewMemo | None = None,
    ) -> None:
        self.views, self.batches, self.memo = views, batches, memo

    def __iter__(self) -> Iterator[Batch]:
        for ks in self.batches:
            made = None if self.memo is None else self.memo.take(self.views.epoch, ks)
            # views (B, 3, S, S) on the device; labels, indices (B,)
            yield self.views.batch(ks) if made is None else made

    def __len__(self) -> int:
        return len(self.batches) if isinstance(self.batches, Sized) else 0


def resident_wanted(cfg: DataConfig, views: TwoViewDataset, device: torch.device) -> bool:
    """Whether ``cfg.device_resident`` puts these views on ``device`` (``auto`` resolved).

    ``auto`` on CUDA: when the images take at most :data:`AUTO_MEMORY_SHARE` of the free
    memory. On CPU: when torch's threads already take every core this process may use, so
    a DataLoader worker would only take turns with them (the quick profile on 2 cores:
    2,870 img/s in the training process against 1,300 with one worker); with a spare
    core the worker overlaps the augmentation with the step.

    Raises:
        DataError: ``true`` but the views are not batched (image files, or the PIL path).
    """
    if cfg.device_resident is True:
        if not isinstance(views, BatchedTwoViewDataset):
            raise DataError(
                "data.device_resident=true needs the batched views of an in-memory dataset "
                f"(digits, npz, cifar10/100); {cfg.dataset.kind!r} with "
                f"data.augment_batched={cfg.augment_batched!r} has none: set "
                "data.device_resident=auto or false."
            )
        return True
    if cfg.device_resident is False or not isinstance(views, BatchedTwoViewDataset):
        return False
    if device.type != "cuda":  # a worker overlaps augmentation only on a core of its own
        return torch.get_num_threads() >= usable_cores()
    images = views.images  # (N, H, W, 3) uint8
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() * images.element_size() <= AUTO_MEMORY_SHARE * free


def with_resident_views(data: DataBundle, cfg: DataConfig, device: torch.device) -> DataBundle:
    """``data`` with resident training views when ``cfg.device_resident`` says so."""
    views = data.train_views
    if not resident_wanted(cfg, views, device):
        return data
    assert isinstance(views, BatchedTwoViewDataset)  # resident_wanted checked it
    return dataclasses.replace(data, train_views=views.on_device(device))


def training_batches(
    cfg: DataConfig,
    views: TwoViewDataset,
    batches: Sampler[list[int]],
    device: torch.device,
    memo: ViewMemo | None = None,
) -> Iterable[Batch]:
    """What the training loop iterates each epoch: resident batches, or the DataLoader.

    ``memo``: the eta cache pass's batches, which resident batches take (the loader
    path makes its views in workers and has none).
    """
    if isinstance(views, BatchedTwoViewDataset) and views.resident:
        return ResidentBatches(views, batches, memo)
    return train_loader(cfg, views, batches, device)
