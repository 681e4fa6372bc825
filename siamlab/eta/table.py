"""A table of one target row per image, in memory or disk-backed (memmap).

ImageNet needs 1.28M x 2048 rows (5.2 GB in float16): ``memmap`` keeps them in a
file with random row access (:class:`~siamlab.eta.slots.SlotFile`); only the touched
pages live in memory, and a checkpoint flushes the file instead of copying it.
Rows are gathered and scattered in ascending order, one vectorised call per batch.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamlab.eta.slots import SlotFile
from siamlab.train.distributed import barrier

_DTYPES = {"float16": np.float16, "float32": np.float32}


def _ascending(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows ascending, order) with ``rows == idx[order]``; rows of a batch are distinct."""
    rows, order = torch.sort(idx)
    if len(rows) > 1 and bool((rows[1:] == rows[:-1]).any()):
        raise ValueError("a batch holds an image twice; the eta table needs distinct rows")
    return rows, order


class RowBuffers:
    """Host (B, d) buffers reused from step to step, by name; pinned for copies to a GPU.

    A fresh tensor of megabytes per step costs a page fault per 4 KB whenever the C
    allocator has handed the previous one back to the kernel; a reused one costs none.
    """

    def __init__(self, dim: int, dtype: torch.dtype, pin: bool = False) -> None:
        self.dim, self.dtype, self.pin = dim, dtype, pin
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int) -> torch.Tensor:
        """Buffer ``name`` with room for ``rows`` rows (its first ``rows`` rows; no copy)."""
        buf = self._buffers.get(name)
        if buf is None or len(buf) < rows:
            buf = torch.empty(rows, self.dim, dtype=self.dtype, pin_memory=self.pin)
            self._buffers[name] = buf
        return buf[:rows]


class EtaTable:
    """``rows`` x ``dim`` values plus, per row, whether and when it was last written.

    Args:
        rows: number of images.
        dim: target dimension d.
        dtype: ``float16`` or ``float32`` storage.
        storage: ``memory`` or ``memmap``.
        path: folder of the memmap files (``eta.slots.npy``: two slots per row, the
            live values and those of the last checkpoint; ``eta.slots.json``: the
            generation the file was last flushed at).
        writer: under torchrun, the one process per node that creates and writes the
            node's shared memmap file (local rank 0); the others map it too and see its
            writes after a barrier. Memory tables are per process.

    Distributed layout (documented choice): the table is replicated, one shared file
    per node (memmap) or one copy per process (memory); after every step the ranks
    exchange their batch's updated rows (all-gather of indices and values), so every
    copy holds every update, as one process would. Every rank takes part in a
    memmap checkpoint (:attr:`every_rank_state`): each keeps the slot map in step.
    """

    def __init__(
        self,
        rows: int,
        dim: int,
        dtype: str,
        storage: str,
        path: Path | None = None,
        writer: bool = True,
    ) -> None:
        self.rows, self.dim, self.storage = rows, dim, storage
        self.np_dtype = _DTYPES[dtype]
        self.dtype = getattr(torch, dtype)
        self.visited = torch.zeros(rows, dtype=torch.bool)  # (N,)
        self.last_step = torch.full((rows,), -1, dtype=torch.long)  # (N,)
        self.writer = writer
        self.slots: SlotFile | None = None
        if storage == "memmap":
            if path is None:
                raise ValueError("memmap storage needs a folder")
            self.slots = SlotFile(path, rows, dim, self.np_dtype, writer)
        else:  # np.zeros: pages are mapped in as rows are first written
            self.values = torch.from_numpy(np.zeros((rows, dim), dtype=self.np_dtype))
        self._scratch = RowBuffers(dim, self.dtype)  # sorted copies of a batch's rows

    @property
    def every_rank_state(self) -> bool:
        """A memmap checkpoint is a generation every process must switch to."""
        return self.slots is not None

    def gather(self, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``idx`` (B,) in the storage dtype (B, d), in the order of ``idx``.

        Args:
            idx: the batch's rows.
            out: a (B, d) host tensor of the storage dtype to fill (default: a new one).

        A row never written reads as zeros without being touched (no page fault, and
        nothing left in a reused file can leak into a fresh run).
        """
        rows, order = _ascending(idx.cpu())
        out = torch.empty(len(rows), self.dim, dtype=self.dtype) if out is None else out
        seen = self.visited[rows]  # (B,)
        if bool(seen.all()):
            out.index_copy_(0, order, self._read(rows))  # back to batch order
            return out
        out.zero_()
        hit = seen.nonzero().squeeze(1)
        if len(hit):
            out.index_copy_(0, order[hit], self._read(rows[hit]))
        return out

    def _read(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` (sorted) into the scratch buffer."""
        found = self._scratch.get("sorted", len(rows))
        if self.slots is not None:
            return self.slots.read(rows, found)
        return torch.index_select(self.values, 0, rows, out=found)

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (B,) as float32 (B, d)."""
        return self.gather(idx).float()

    def write(self, idx: torch.Tensor, values: torch.Tensor, step: int) -> None:
        """Store ``values`` (B, d) at rows ``idx`` (B,) and mark them visited at ``step``."""
        idx = idx.cpu()
        rows, order = _ascending(idx)
        host = self._scratch.get("cast", len(rows)).copy_(values.detach())  # storage dtype
        stored = torch.index_select(host, 0, order, out=self._scratch.get("sorted", len(rows)))
        if self.slots is not None:
            self.slots.write(rows, stored)
        else:
            self.values.index_copy_(0, rows, stored)
        self.visited[idx] = True
        self.last_step[idx] = step

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; for memmap, the generation just flushed (no copy)."""
        state: dict[str, Any] = {
            "visited": self.visited.clone(),
            "last_step": self.last_step.clone(),
        }
        if self.slots is not None:
            state.update(self.slots.commit())
        else:
            state["values"] = self.values.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (a memmap table reads its checkpointed slots)."""
        self.visited.copy_(state["visited"])
        self.last_step.copy_(state["last_step"])
        if self.slots is not None and "snapshot" in state:  # a checkpoint of the old layout
            self.slots.copy_in(np.load(state["snapshot"], mmap_mode="r"))
            barrier()
        elif self.slots is not None:
            self.slots.restore(state)
        else:
            self.values.copy_(state["values"])
