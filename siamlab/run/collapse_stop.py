"""``train.stop_on_collapse``: end a run at the epoch its verdict enters complete collapse.

The trainer knows nothing of metrics: it polls a ``stop_after_epoch`` predicate after
each epoch's callbacks (:class:`~siamlab.train.loop.Trainer`). This module builds that
predicate from the run's :class:`~siamlab.diagnostics.verdict.VerdictJudge`, which the
monitor has just given that epoch's values; the run then saves its checkpoint and results
with status :data:`~siamlab.results.runstate.STOPPED_COLLAPSED`
(:func:`siamlab.run.train_run.train_run`).

The stop is on *entering* ``collapsed``, not on being there: a stopped run resumed from
its checkpoint (``siamlab run --resume-stopped``) is collapsed already and trains on to
its last epoch with the same config, however often it is interrupted on the way. It
stops again only if its verdict leaves ``collapsed`` and enters it anew.
"""

from collections.abc import Callable

from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.verdict import VerdictJudge
from siamlab.train.distributed import DistInfo, any_rank


def never() -> bool:
    """The predicate of a run that does not stop on collapse."""
    return False


def collapse_stop(monitor: Monitor, dist: DistInfo) -> Callable[[], bool]:
    """True at the end of the epoch whose evaluation made the run's verdict ``collapsed``.

    ``collapsed`` is entered once it held ``diagnostics.verdict.hold_evaluations``
    evaluations; a provisional verdict never stops a run.

    Args:
        monitor: the run's monitor; its verdict judge is read, never changed.
        dist: this process's place in the job; under torchrun every rank stops when any
            rank's judge says so (one collective per epoch).
    """
    judges = [h for h in monitor.hooks if isinstance(h, VerdictJudge)]

    def collapsed() -> bool:
        return any(judge.entered and judge.run.collapsed for judge in judges)

    if dist.world_size > 1:
        return lambda: any_rank(collapsed())
    return collapsed
