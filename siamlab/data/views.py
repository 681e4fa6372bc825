"""Two-view and eval datasets over an image source, and the epoch batch sampler.

The randomness of training data is keyed, never streamed: the views of sample ``i`` in
``epoch`` depend only on (seed, epoch, i), and the epoch's order only on (seed, epoch). So a
run gives the same batches on 1 or 8 processes, with any number of workers, and resumes
exactly in the middle of an epoch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from siamlab.data.sources import ImageSource
from siamlab.errors import DataError

Transform = Callable[[Image.Image], torch.Tensor]


def mix_seed(*parts: int | str) -> int:
    """Return a deterministic 63-bit seed mixing ``parts`` (stable across runs and platforms).

    Args:
        *parts: integers (seed, epoch, index) and a tag string separating uses.

    Returns:
        An integer in [0, 2**63), suitable for ``torch.Generator.manual_seed``.

    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class TwoViewDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int, int]]):
    """Two augmented views x1 = T(x), x2 = T'(x) of each image (SimSiam paper, Fig. 1).

    With ``pairs`` > 1 every image gives that many independently augmented pairs, at
    flat indices ``k = i * pairs + r`` (the "2x" asymmetric variant of Sec. 4.6); use
    :class:`PairBatches` to expand a batch of image indices.

    Item ``i`` is ``(view1, view2, label, i)``; each view is (3, S, S). The views' randomness
    is seeded from (seed, epoch, i) inside a forked CPU RNG, so they do not depend on worker
    count, process count or access order, and the global RNG is left untouched. Call
    :meth:`set_epoch` before creating each epoch's DataLoader iterator (with
    ``persistent_workers=True`` the workers would keep the old epoch).
    """

    def __init__(
        self, source: ImageSource, transform: Transform, seed: int, pairs: int = 1
    ) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.pairs = pairs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views the dataset returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source) * self.pairs

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """Pair ``k % pairs`` of image ``i = k // pairs`` (k = i when ``pairs`` is 1)."""
        i, pair = divmod(int(k), self.pairs)
        img = self.source.image(i)
        key = ("views", self.seed, self.epoch, i) + ((pair,) if pair else ())
        with torch.random.fork_rng(devices=[]):
            # CPU generator only: torch.manual_seed would also reseed every CUDA generator
            torch.default_generator.manual_seed(mix_seed(*key))
            view1 = self.transform(img)  # (3, S, S)
            view2 = self.transform(img)  # (3, S, S)
        return view1, view2, int(self.source.targets[i]), i


class EvalDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """Deterministically preprocessed images for kNN banks and test sets: ``(image, label, i)``.

    Args:
        source: the images.
        transform: the deterministic eval preprocessing (:func:`eval_transform`).
        keep_bytes: keep each preprocessed image after its first use when all of them fit
            in this many bytes (in-memory datasets: every evaluation after the first reads
            the same tensors instead of preprocessing again); 0 = never (image folders).
    """

    def __init__(self, source: ImageSource, transform: Transform, keep_bytes: int = 0) -> None:
        self.source = source
        self.transform = transform
        self.keep_bytes = keep_bytes
        self._kept: torch.Tensor | None = None  # (N, 3, S, S), filled on first use
        self._has = torch.zeros(0, dtype=torch.bool)  # (N,)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        i = int(i)
        label = int(self.source.targets[i])
        if self._kept is not None and self._has[i]:
            return self._kept[i], label, i
        image = self.transform(self.source.image(i))  # (3, S, S)
        if self.keep_bytes and self._kept is None and not self._has.numel():
            fits = image.numel() * image.element_size() * len(self) <= self.keep_bytes
            self._has = torch.zeros(len(self) if fits else 1, dtype=torch.bool)
            self._kept = image.new_empty((len(self), *image.shape)) if fits else None
        if self._kept is not None:
            self._kept[i], self._has[i] = image, True
        return image, label, i


class EpochSampler(Sampler[list[int]]):
    """Batch sampler: a keyed permutation per epoch, cut into global batches, sharded by rank.

    The epoch's order is ``torch.randperm(n)`` from a generator seeded by (seed, epoch); global
    batch b is ``perm[b * batch_size:(b + 1) * batch_size]`` and rank r yields its contiguous
    share ``[r * m:(r + 1) * m]`` of it, ``m = batch_size // world_size``. The ranks' batches
    together are exactly the single-process batches, in order. Without ``drop_last`` the last
    short batch is split as evenly as possible; a rank whose share is empty skips it.

    Args:
        n: dataset size.
        batch_size: global batch size (over all ranks).
        seed: run seed.
        drop_last: drop the last incomplete global batch (training default).
        rank: this process's rank.
        world_size: number of processes; must divide ``batch_size``.

    Raises:
        DataError: ``batch_size`` exceeds ``n`` with ``drop_last``, or is not divisible
            by ``world_size``.

    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if n < 1 or batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need n, batch_size >= 1, 0 <= rank < world_size; got "
                f"n={n} batch_size={batch_size} rank={rank} world_size={world_size}"
            )
        if drop_last and batch_size > n:
            raise DataError(
                f"batch size {batch_size} exceeds the dataset's {n} images, so an epoch would "
                f"have no full batch; use a batch size of at most {n} (or more data)."
            )
        if batch_size % world_size:
            raise DataError(
                f"global batch size {batch_size} is not divisible by the {world_size} "
                f"processes; use a multiple of {world_size}."
            )
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def num_batches(self) -> int:
        """Return the number of global batches in a full epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, skipping its first ``start_batch`` batches (mid-epoch resume)."""
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"start_batch {start_batch} not in 0..{self.num_batches}")
        self.epoch, self.start_batch = epoch, start_batch

    def _shares(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(mix_seed("order", self.seed, self.epoch))
        perm = torch.randperm(self.n, generator=g)  # (n,)
        for b in range(self.start_batch, self.num_batches):
            batch = perm[b * self.batch_size : (b + 1) * self.batch_size]  # (<= batch_size,)
            yield torch.tensor_split(batch, self.world_size)[self.rank].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (share for share in self._shares() if share)

    def __len__(self) -> int:
        remaining = self.num_batches - self.start_batch
        rest = self.n % self.batch_size
        if rest and not self.drop_last and remaining and self.rank >= rest:
            remaining -= 1  # this rank's share of the short last batch is empty
        return remaining


class PairBatches(Sampler[list[int]]):
    """Expands each batch of image indices into the flat indices of all their pairs.

    Args:
        images: a batch sampler over image indices.
        pairs: pairs per image (``TwoViewDataset.pairs``).
    """

    def __init__(self, images: EpochSampler, pairs: int) -> None:
        super().__init__()
        self.images, self.pairs = images, pairs

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.images:
            yield [i * self.pairs + r for i in batch for r in range(self.pairs)]

    def __len__(self) -> int:
        return len(self.images)
