"""One process per run: an advisory lock in each run folder that says who holds it.

Many runs of one study may train at once (a Slurm array, ``--launcher local``, two
shells), but never one run twice. The lock is ``fcntl.flock`` on ``<run>/.lock``: the
kernel releases it when the holder exits, even after SIGKILL. The file also names the
holder (pid, host, Slurm job id); it is emptied on release, so a name left behind is
a holder that died. Where flock does not reach across hosts (some network file
systems), a named holder on another host still counts while its Slurm job is listed
by Slurm (or while it cannot be checked); a dead one is recognised as stale.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from siamlab.errors import ResultsError
from siamlab.results.holder import Holder

LOCK_FILE = ".lock"


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
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(folder, previous) from None
        if previous is not None and previous.host != me.host and previous.alive():
            raise RunLockedError(folder, previous)  # flock does not span hosts here
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
