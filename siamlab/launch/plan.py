"""What a launcher submits: the runs of a study not yet finished nor trained elsewhere.

Also the one place that imports submitit, an optional extra (``pip install -e
".[slurm]"``), and the launcher's entries in each run's ``state.json``: ``queued``
before its job exists (so a job that has started is never marked queued again), then
the job's id and log.
"""

from collections.abc import Callable
from types import ModuleType

from siamlab.config.study import RunSpec
from siamlab.errors import ConfigError
from siamlab.results.runlock import lock_holder
from siamlab.results.runstate import write_state
from siamlab.study.changed_config import refuse_changed_runs
from siamlab.study.execute import ended_as


def import_submitit() -> ModuleType:
    """submitit, or a clear error naming the extra that installs it.

    Raises:
        ConfigError: submitit is not installed.
    """
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--launcher slurm/local needs submitit, an optional extra: "
            'pip install -e ".[slurm]" (or pip install submitit)'
        ) from None
    return submitit


def pending_runs(
    runs: list[RunSpec],
    log: Callable[[str], None],
    resume_stopped: bool = False,
    trains_here: bool = True,
) -> list[RunSpec]:
    """The runs to submit: not done, and not held by a live process (both said).

    Done: finished, or stopped on collapse unless ``resume_stopped``. ``trains_here``:
    the jobs run on this machine (``--launcher local``; not so for Slurm), which
    decides what a ``precision`` of ``auto`` means for the config check.

    Raises:
        ConfigError: a run has results of another config (nothing is submitted).
    """
    refuse_changed_runs(runs, trains_here)
    out = []
    for spec in runs:
        name = f"{spec.variant}/seed{spec.seed}"
        holder = lock_holder(spec.directory())
        if ended := ended_as(spec, resume_stopped):
            log(f"{name}: {ended} earlier, not submitted ({spec.directory()})")
        elif holder is not None:
            log(f"{name}: being trained by {holder.describe()}, not submitted")
        else:
            out.append(spec)
    return out


def mark_queued(runs: list[RunSpec]) -> None:
    """Write ``queued`` (and clear a former holder and error) before submitting ``runs``."""
    for spec in runs:
        write_state(spec.directory(), state="queued", pid=0, host="", error="")


def record_job(runs: list[RunSpec], job_id: str, log: str) -> None:
    """Name the job that will train ``runs`` and its log file, once it is submitted."""
    for spec in runs:
        write_state(spec.directory(), job_id=job_id, log=log)
