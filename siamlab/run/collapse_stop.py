"""``train.stop_on_collapse``: end a run at the epoch its verdict enters complete collapse.

The trainer knows nothing of metrics: it polls a ``stop_after_epoch`` predicate after
each epoch's callbacks (:class:`~siamlab.train.loop.Trainer`). This module builds that
predicate from the run's :class:`~siamlab.diagnostics.verdict.VerdictJudge`, which the
monitor has just given that epoch's values; the run then saves its checkpoint and results
with status :data:`~siamlab.results.runstate.STOPPED_COLLAPSED`
(:func:`siamlab.run.train_run.train_run`).
"""

from collections.abc import Callable

from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.verdict import VerdictJudge
from siamlab.train.distributed import DistInfo, any_rank


def never() -> bool:
    """The predicate of a run that does not stop on collapse."""
    return False


def collapse_stop(monitor: Monitor, dist: DistInfo) -> Callable[[], bool]:
    """True once the run's verdict is ``collapsed``, entered and not provisional.

    Args:
        monitor: the run's monitor; its verdict judge is read, never changed.
        dist: this process's place in the job; under torchrun every rank stops when any
            rank's judge says so (one collective per epoch).
    """
    judges = [h for h in monitor.hooks if isinstance(h, VerdictJudge)]

    def collapsed() -> bool:
        return any(judge.run.collapsed for judge in judges)

    if dist.world_size > 1:
        return lambda: any_rank(collapsed())
    return collapsed
