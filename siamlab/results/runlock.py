"""One process per run: an advisory lock in each run folder that says who holds it.

Many runs of one study may train at once (a Slurm array, ``--launcher local``, two
shells), but never one run twice. The lock is ``fcntl.flock`` on ``<run>/.lock``: the
kernel releases it when the holder exits, even after SIGKILL, and its forked children
(DataLoader workers share the open file) have exited too, which is waited for. The file
also names the holder (pid, host, Slurm job id); it is emptied on release, so a name left behind is
a holder that died. Where flock does not reach across hosts (some network file
systems), a named holder on another host still counts while its Slurm job is listed
by Slurm (or while it cannot be checked); a dead one is recognised as stale.
"""

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from siamlab.errors import ResultsError
from siamlab.results.holder import Holder

LOCK_FILE = ".lock"
ORPHAN_WAIT_S = 15.0  # how long a dead holder's forked children may keep its lock


class RunLockedError(ResultsError):
    """Another live process trains this run."""

    def __init__(self, run_dir: Path, holder: Holder | None) -> None:
        self.holder = holder
        who = holder.describe() if holder else "a process that did not name itself"
        super().__init__(
            f"{run_dir} is being trained by another siamlab process ({who}); "
            "it is left to that process (re-run later to resume it if it stops)"
        )


@dataclass
class RunLock:
    """A held lock; ``stale`` names a dead former holder whose lock was taken over."""

    run_dir: Path
    stale: Holder | None = None


def lock_holder(run_dir: str | Path) -> Holder | None:
    """The live holder named in a run's lock file, or None (free, or its holder died)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        holder = Holder.parse(path.read_text())
    except OSError:
        return None
    return holder if holder is not None and holder.alive() else None


def ensure_folder(folder: Path) -> None:
    """Create a results folder.

    Raises:
        ResultsError: it cannot be created (the message says how to choose another).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise ResultsError(
            f"cannot write to the results folder {folder}: {exc.strerror or exc}; "
            "choose another with --set output.root=PATH"
        ) from exc


def _flock(fh: IO[str], folder: Path, previous: Holder | None, me: Holder) -> None:
    """Take the flock; wait out the forked children of a holder that died on this host.

    A DataLoader worker is forked with the lock's open file, so it holds the flock until
    it exits; after a SIGKILL of its parent it notices within torch's 5 s watchdog
    interval. A lock held although its named holder here is dead is therefore retried for
    up to :data:`ORPHAN_WAIT_S` seconds before it counts as taken.

    Raises:
        RunLockedError: a live process holds it, or a dead one's children still do.
    """
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            orphaned = previous is not None and previous.host == me.host and not previous.alive()
            if not orphaned or time.monotonic() > deadline:
                raise RunLockedError(folder, previous) from None
            time.sleep(0.2)


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[RunLock]:
    """Hold a run folder's lock for the duration of the block (creating the folder).

    Raises:
        RunLockedError: a live process holds it (its pid, host, job id are named).
        ResultsError: the folder cannot be created or written.
    """
    folder = Path(run_dir)
    ensure_folder(folder)
    fh = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole block
    me = Holder.me()
    try:
        fh.seek(0)
        previous = Holder.parse(fh.read())
        _flock(fh, folder, previous, me)
        # flock does not span hosts; a holder of this very Slurm job is its earlier attempt,
        # killed and requeued under the same id (which squeue reports as running: us)
        requeued = previous is not None and bool(me.job_id) and previous.job_id == me.job_id
        if previous is not None and previous.host != me.host and not requeued and previous.alive():
            raise RunLockedError(folder, previous)
        fh.seek(0)
        fh.truncate()
        fh.write(me.to_json())
        fh.flush()
        try:
            yield RunLock(folder, previous)
        finally:
            fh.seek(0)
            fh.truncate()  # released cleanly: no holder named
            fh.flush()
    finally:
        fh.close()  # releases the flock
