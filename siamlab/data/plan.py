"""The order of batches known ahead of time: global step -> (epoch, image indices).

The k-step alternation of the paper's Sec. 5.2 needs the images of the next k steps
before taking them; this makes that look-ahead explicit instead of a side effect
of iterating a DataLoader.
"""

from functools import lru_cache

from siamlab.data.views import EpochSampler


class BatchPlan:
    """Which images every global step will see.

    Args:
        n: number of training images.
        batch_size: images per step (global).
        seed: the run seed (same order as the training sampler).
        rank: this process's rank; its batches are its shares of the global ones.
        world_size: number of processes.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self._sampler = EpochSampler(n, batch_size, seed, rank=rank, world_size=world_size)
        self.steps_per_epoch = self._sampler.num_batches

    @lru_cache(maxsize=4)  # noqa: B019 - a handful of epochs, freed with the plan
    def epoch_batches(self, epoch: int) -> tuple[tuple[int, ...], ...]:
        """All batches of ``epoch``, in order."""
        self._sampler.set_epoch(epoch)
        return tuple(tuple(b) for b in self._sampler)

    def batch(self, step: int) -> tuple[int, list[int]]:
        """(epoch, image indices) of 0-based global ``step``."""
        epoch, b = divmod(step, self.steps_per_epoch)
        return epoch, list(self.epoch_batches(epoch)[b])
