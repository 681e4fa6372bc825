"""Atomic file replacement: write a temp file beside the target, fsync, rename.

A reader (or a resumed run) sees either the previous complete file or the new
complete file, never a torn one, even if the writer is killed mid-write.
"""

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from siamlab.errors import ResultsError


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``.

    Args:
        path: the final file.
        write: writes the complete file to the path it is given.

    Raises:
        ResultsError: the folder is not writable or the disk is full; the previous
            file at ``path`` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _temp_beside(path) as tmp:
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise ResultsError(
            f"could not write {path}: {exc.strerror or exc}. The previous file (if any) is "
            "intact; free disk space or fix the folder's permissions, then re-run to resume."
        ) from exc
