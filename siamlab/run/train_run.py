"""Train one run to its end: assemble it, fit, and record how it ended.

Resumes from the run's checkpoint if there is one. Under torchrun every process calls
:func:`train_run`; the global batch is split over them, BN statistics span them, and
rank 0 writes results and checkpoints.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from siamlab.config.study import RunSpec
from siamlab.results.recorder import Recorder
from siamlab.results.runstate import STOPPED_COLLAPSED, write_state
from siamlab.run.assemble import build_run
from siamlab.train.device import join_job
from siamlab.train.loop import Preempted, StoppedEarly
from siamlab.train.step import DivergedError


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``finished``, ``stopped_collapsed`` or ``diverged``."""

    status: str
    directory: Path
    summary: dict[str, float]


def train_run(
    spec: RunSpec, progress: bool = True, should_stop: Callable[[], bool] | None = None
) -> RunOutcome:
    """Train one run to the end, resuming from its checkpoint if there is one.

    Args:
        spec: the run.
        progress: show a progress bar (rank 0).
        should_stop: polled between steps; when it returns True (on any rank) the run
            saves a checkpoint and its results (status ``preempted``) and raises Preempted.

    With ``train.stop_on_collapse``, an epoch whose evaluation makes the run's verdict
    ``collapsed`` ends it: checkpoint and results (status ``stopped_collapsed``) as of
    that epoch.

    Raises:
        Preempted: a stop was requested; re-running resumes exactly.
        SiamlabError: bad data, an unwritable folder or a mismatched checkpoint.
    """
    device, dist = join_job(spec.config.train)
    run = build_run(spec, device, dist, progress, should_stop)
    if dist.is_main:  # for ``siamlab status``: step k of total
        write_state(run.directory, total_steps=run.length.total_steps)
    status = "finished"
    try:
        if run.start_step < run.length.total_steps:
            run.trainer.fit(run.start_step, run.length.total_steps)
        else:  # the last checkpoint, whose results were not written (a kill, a full disk)
            run.results.write(status)
    except Preempted as exc:
        run.checkpointer.save(exc.step, "preempted")
        raise
    except StoppedEarly as exc:  # only train.stop_on_collapse asks for it
        run.checkpointer.save(exc.step, STOPPED_COLLAPSED)
        status = STOPPED_COLLAPSED
    except DivergedError as exc:
        run.results.write("diverged", diverged_step=exc.step)
        status = "diverged"
    finally:
        run.monitor.close()
    return RunOutcome(status, run.directory, summary(run.results.recorder, spec.config.model.dim))


def summary(recorder: Recorder, dim: int) -> dict[str, float]:
    """The final numbers of a run's report line (z-stds also times sqrt(d))."""
    out: dict[str, float] = {}
    for name in ("loss", "epoch_loss", "z_std_train", "z_std_eval", "knn_top1"):
        value = recorder.last(name)
        if isinstance(value, float):
            out[name] = value
    for name in ("z_std_train", "z_std_eval"):
        if name in out:
            out[f"{name}*sqrt(d)"] = out[name] * math.sqrt(dim)
    return out
