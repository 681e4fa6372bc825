"""One ``siamlab run`` per study folder: an advisory lock that says who holds it.

The lock is ``fcntl.flock`` on ``<study>/.lock``: the kernel releases it when the
holder exits, even after SIGKILL, so a stale lock never blocks the next run.
"""

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from siamlab.errors import ResultsError
from siamlab.provenance import now


@contextlib.contextmanager
def study_lock(study_dir: str | Path) -> Iterator[None]:
    """Hold the study folder's lock for the duration of the block.

    Raises:
        ResultsError: another process holds it (its pid, host and start time are
            named), or the folder cannot be created or written.
    """
    folder = Path(study_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / ".lock", "a+")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise ResultsError(
            f"cannot write to the results folder {folder}: {exc.strerror or exc}; "
            "choose another with --set output.root=PATH"
        ) from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "{}"
            info = json.loads(holder) if holder.startswith("{") else {}
            raise ResultsError(
                f"{folder} is in use by another siamlab run (pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')}, since {info.get('since', '?')}); wait for it to "
                "finish or stop it, then re-run (finished runs are skipped)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()}))
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock
