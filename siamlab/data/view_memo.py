"""The views the eta cache pass made, kept for the training steps that take them next.

With the k-step alternation (paper Sec. 5.2; :class:`siamlab.eta.cached.CachedTargets`)
the cache pass at the start of a window makes the views of the window's k batches, and
the k SGD steps then need the very same views: they are keyed by (seed, epoch, image),
so making them twice gives the same bits twice. With resident views
(:mod:`siamlab.data.resident`) the cache pass puts each batch it makes here and the
training batches take them instead of making them again, up to a memory budget.

Only a batch that fits the budget is kept; a batch that training asks for and does not
find means that nothing here is still to be asked for (the window is past, or its later
batches did not fit), so the memo empties itself then. The window's first batch, which
training made before its cache pass ran, is the one batch per window made twice.
"""

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # views, labels, indices
BUDGET_BYTES = 512 * 2**20  # at most this much of kept views (quick: 0.8 MB per batch)


def _size(batch: Batch) -> int:
    """The bytes of a batch's tensors."""
    return sum(t.numel() * t.element_size() for t in batch)


class ViewMemo:
    """Batches keyed by (epoch, flat indices), kept within ``budget_bytes``.

    Args:
        budget_bytes: the most bytes of tensors held at once.
    """

    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self.budget_bytes, self.held_bytes = budget_bytes, 0
        self._batches: dict[tuple[int, tuple[int, ...]], Batch] = {}

    def __len__(self) -> int:
        return len(self._batches)

    def put(self, epoch: int, ks: list[int], batch: Batch) -> None:
        """Keep ``batch``, the views of ``ks`` in ``epoch``, if it fits the budget."""
        key, size = (epoch, tuple(ks)), _size(batch)
        if key in self._batches:  # made again (a refresh after a resume): one copy kept
            self.held_bytes -= _size(self._batches.pop(key))
        if self.held_bytes + size <= self.budget_bytes:
            self._batches[key] = batch
            self.held_bytes += size

    def take(self, epoch: int, ks: list[int]) -> Batch | None:
        """The kept batch of ``ks`` in ``epoch`` (no longer kept), or None, emptying the memo."""
        batch = self._batches.pop((epoch, tuple(ks)), None)
        if batch is None:
            self._batches.clear()
            self.held_bytes = 0
        else:
            self.held_bytes -= _size(batch)
        return batch
