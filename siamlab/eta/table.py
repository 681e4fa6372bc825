"""A table of one target row per image, in memory or disk-backed (memmap).

ImageNet needs 1.28M x 2048 rows (5.2 GB in float16): ``memmap`` keeps them in a
file with random row access; only the touched pages live in memory.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamlab.errors import ResultsError
from siamlab.train.distributed import barrier

_DTYPES = {"float16": np.float16, "float32": np.float32}


class EtaTable:
    """``rows`` x ``dim`` values plus, per row, whether and when it was last written.

    Args:
        rows: number of images.
        dim: target dimension d.
        dtype: ``float16`` or ``float32`` storage.
        storage: ``memory`` or ``memmap``.
        path: folder of the memmap files (``eta.work`` is the live table,
            ``eta.snapshot`` the copy matching the last checkpoint).
        writer: under torchrun, the one process per node that creates and writes the
            node's shared memmap file (local rank 0); the others map it read-only-ish
            and see its writes after a barrier. Memory tables are per process.

    Distributed layout (documented choice): the table is replicated, one shared file
    per node (memmap) or one copy per process (memory); after every step the ranks
    exchange their batch's updated rows (all-gather of indices and values), so every
    copy holds every update, as one process would.
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
        self.visited = torch.zeros(rows, dtype=torch.bool)  # (N,)
        self.last_step = torch.full((rows,), -1, dtype=torch.long)  # (N,)
        self.path, self.writer = path, writer
        if storage == "memmap":
            if path is None:
                raise ValueError("memmap storage needs a folder")
            if writer:
                path.mkdir(parents=True, exist_ok=True)
                np.lib.format.open_memmap(
                    path / "eta.work.npy", mode="w+", dtype=self.np_dtype, shape=(rows, dim)
                ).flush()
            barrier()  # the file exists before the other processes of the node map it
            self.values: Any = np.load(path / "eta.work.npy", mmap_mode="r+")
        else:
            self.values = np.zeros((rows, dim), dtype=self.np_dtype)

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (B,) as float32 (B, d)."""
        return torch.from_numpy(np.asarray(self.values[idx.numpy()], dtype=np.float32))

    def write(self, idx: torch.Tensor, values: torch.Tensor, step: int) -> None:
        """Store ``values`` (B, d) at rows ``idx`` (B,) and mark them visited at ``step``."""
        if self.storage == "memory" or self.writer:
            self.values[idx.numpy()] = values.detach().cpu().numpy().astype(self.np_dtype)
        self.visited[idx] = True
        self.last_step[idx] = step

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume. A memmap table is snapshotted to its own file."""
        state: dict[str, Any] = {
            "visited": self.visited.clone(),
            "last_step": self.last_step.clone(),
        }
        if self.storage == "memmap":
            assert self.path is not None
            self.values.flush()
            tmp = self.path / ".eta.snapshot.tmp.npy"
            try:
                shutil.copyfile(self.path / "eta.work.npy", tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path / "eta.snapshot.npy")
            except OSError as exc:
                raise ResultsError(
                    f"could not snapshot the eta table in {self.path}: {exc}"
                ) from exc
            state["snapshot"] = str(self.path / "eta.snapshot.npy")
        else:
            state["values"] = torch.from_numpy(self.values.copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (a memmap table copies its snapshot back)."""
        self.visited.copy_(state["visited"])
        self.last_step.copy_(state["last_step"])
        if self.storage == "memmap":
            if self.writer:
                snapshot = np.load(state["snapshot"], mmap_mode="r")
                for start in range(0, self.rows, 65536):  # chunked: never all of it in RAM
                    self.values[start : start + 65536] = snapshot[start : start + 65536]
                self.values.flush()
            barrier()
        else:
            self.values[:] = state["values"].numpy()
