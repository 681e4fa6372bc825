"""A disk-backed table whose checkpoint is a generation, not a copy: two slots per row.

Each row r owns two slots in one file (``eta.slots.npy``, shape (N, 2, d)). Writes made
after the last checkpoint go to the slot that checkpoint does not point to, so the
checkpointed value of every row stays on disk untouched until the next checkpoint. A
checkpoint (:meth:`SlotFile.commit`) flushes the file and returns the per-row slot map
(N bytes) as the new generation; the run's ``last.pt``, replaced atomically, is what
switches from one generation to the next. Resuming points the reads at the map in
``last.pt``: whatever was written after it, or by a run killed mid-checkpoint, lies in the
other slots and is overwritten later. No row is ever copied, at a checkpoint or a resume.

This is shadow paging (copy-on-write pages with an atomically switched page table, as in
database recovery) at the granularity of one table row.
"""

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamlab.atomic import atomic_write
from siamlab.errors import ResultsError
from siamlab.train.distributed import barrier

DATA_FILE, META_FILE = "eta.slots.npy", "eta.slots.json"


def _create(file: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """A sparse ``.npy`` file of zeros whose data starts on a page boundary.

    The header is padded to one page, so a row of a page's size (2048 float16) is
    exactly one page: one fault and one dirty page per row, never two.
    """
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
    text = repr({**header, "shape": shape}).encode("latin1")
    page = mmap.PAGESIZE
    blob = np.lib.format.magic(1, 0) + struct.pack("<H", page - 10) + text
    blob += b" " * (page - len(blob) - 1) + b"\n"
    with open(file, "wb") as fh:
        fh.write(blob)
        fh.truncate(page + int(np.prod(shape)) * dtype.itemsize)  # a hole: no block yet


def _layout(file: Path) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, data offset) of an ``.npy`` file, None if it is absent or torn."""
    try:
        with open(file, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except (OSError, ValueError):
        return None
    if fortran or file.stat().st_size != offset + int(np.prod(shape)) * dtype.itemsize:
        return None
    return shape, dtype, offset


class SlotFile:
    """``rows`` x 2 slots x ``dim`` values in ``folder``, mapped with random-access advice.

    Args:
        folder: where the data and generation files live.
        rows: N.
        dim: d.
        dtype: storage dtype (numpy).
        writer: this process creates and writes the file (one per node); the others map
            the same file and keep only their slot maps in step.

    A file of the same shape already in ``folder`` is reused (a resumed run reads its
    checkpointed slots; a fresh run never reads a row before writing it).
    """

    def __init__(self, folder: Path, rows: int, dim: int, dtype: type, writer: bool) -> None:
        self.folder, self.writer, self.generation = folder, writer, 0
        shape, file = (rows, 2, dim), folder / DATA_FILE
        if writer:
            found = _layout(file)
            if found is None or found[:2] != (shape, np.dtype(dtype)):
                folder.mkdir(parents=True, exist_ok=True)
                _create(file, shape, np.dtype(dtype))
                self._write_meta()  # a new file: generation 0, older than any checkpoint
        barrier()  # the file exists before the other processes of the node map it
        found = _layout(file)
        if found is None:
            raise ResultsError(f"eta table file {file} is missing or torn; delete {folder}")
        self._fh = open(file, "r+b")  # noqa: SIM115 - mapped for the table's lifetime
        self._map = mmap.mmap(self._fh.fileno(), 0)
        if hasattr(mmap, "MADV_RANDOM"):  # no read-ahead: a row is one 4 KB page of 2048 fp16
            self._map.madvise(mmap.MADV_RANDOM)
        flat: np.ndarray = np.frombuffer(
            self._map, dtype=dtype, count=rows * 2 * dim, offset=found[2]
        )
        self.data = torch.from_numpy(flat.reshape(rows * 2, dim))  # (2N, d): slot s of r at 2r+s
        self.current = torch.zeros(rows, dtype=torch.uint8)  # (N,) the slot holding r's value
        self.checkpointed = torch.zeros(rows, dtype=torch.uint8)  # (N,) the last checkpoint's

    def _write_meta(self) -> None:
        text = json.dumps({"generation": self.generation}) + "\n"

        def write(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(self.folder / META_FILE, write)

    def _meta_generation(self) -> int:
        try:
            return int(json.loads((self.folder / META_FILE).read_text())["generation"])
        except (OSError, KeyError, TypeError, ValueError):
            return -1

    def read(self, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The values of ``rows`` (B,), sorted ascending, as stored, into ``out`` (B, d)."""
        return torch.index_select(self.data, 0, 2 * rows + self.current[rows], out=out)

    def write(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Store ``values`` (B, d) at ``rows`` (B,), sorted ascending, in their free slots."""
        slot = 1 - self.checkpointed[rows]  # (B,) never the checkpoint's slot
        if self.writer:
            self.data.index_copy_(0, 2 * rows + slot, values)
        self.current[rows] = slot

    def commit(self) -> dict[str, Any]:
        """Make the current values durable and return them as the next generation.

        Raises:
            ResultsError: the file cannot be flushed (disk full, I/O error).
        """
        self.generation += 1
        if self.writer:
            try:
                self._map.flush()  # msync: the rows written since the last checkpoint
                os.fsync(self._fh.fileno())
            except OSError as exc:
                raise ResultsError(
                    f"could not flush the eta table in {self.folder}: {exc}"
                ) from exc
            self._write_meta()
        self.checkpointed = self.current.clone()
        return {"generation": self.generation, "slots": self.current.clone()}

    def restore(self, state: dict[str, Any]) -> None:
        """Read from generation ``state`` (:meth:`commit`'s) again.

        Raises:
            ResultsError: the file is older than the checkpoint (recreated or replaced).
        """
        on_disk = self._meta_generation()
        if on_disk < state["generation"]:
            raise ResultsError(
                f"the eta table in {self.folder} is at generation {on_disk}, older than the "
                f"checkpoint's {state['generation']}: the file was deleted or recreated since. "
                "Restore the folder, or delete the run's folder to start over"
            )
        self.generation = state["generation"]
        self.current = state["slots"].to(torch.uint8).clone()
        self.checkpointed = self.current.clone()

    def copy_in(self, snapshot: np.ndarray) -> None:
        """Load a full (N, d) array into slot 0 of every row (checkpoints of the old layout)."""
        if self.writer:
            for start in range(0, snapshot.shape[0], 65536):  # chunked: never all of it in RAM
                chunk = torch.from_numpy(np.array(snapshot[start : start + 65536]))  # a copy
                self.data[2 * start : 2 * (start + len(chunk)) : 2] = chunk
        self.current.zero_()
        self.checkpointed.zero_()
