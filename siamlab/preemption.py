"""SIGTERM / SIGINT as a request to stop cleanly after the current step.

Clusters preempt jobs with SIGTERM; users press Ctrl-C. Either sets a flag that the
trainer checks between steps; the run then writes a checkpoint and its results and
the CLI exits with :data:`EXIT_PREEMPTED`. A second signal is handled normally, so
a stuck process can still be interrupted.
"""

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: re-run the same command to resume
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Slurm warns a job before its time limit or a preemption with a user signal
# (submitit asks for USR2; clusters configure USR1 too): a stop request as well.
SLURM_STOP_SIGNALS = (*STOP_SIGNALS, signal.SIGUSR1, signal.SIGUSR2)


class StopFlag:
    """Set by a signal; read by the trainer between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopFlag]:
    """Install the handlers for ``signals`` for the block (main thread only; else a no-op)."""
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        flag.signal = signum
        signal.signal(signum, previous[signum])  # a second signal acts as usual

    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, handle)
    except ValueError:  # not the main thread
        previous.clear()
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def leave_signals_to_the_main_process(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: loader workers ignore SIGTERM and SIGINT.

    Slurm preempts a job with SIGTERM to every one of its processes, and Ctrl-C signals
    the whole foreground process group. A worker killed by it would make the main
    process fail ("DataLoader worker is killed by signal") instead of finishing its
    step and checkpointing; ignoring the signal leaves the stop to the main process,
    which then shuts its workers down (they also exit if the main process dies).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
