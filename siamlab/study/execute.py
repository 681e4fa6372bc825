"""Run every variant x seed of a study: skip finished runs, resume others, survive failures.

A run that ``train.stop_on_collapse`` stopped counts as done (reported
``stopped_collapsed``) unless ``resume_stopped`` asks to train it on to its end.

Each run is locked on its own (:mod:`siamlab.results.runlock`), so several processes
(a Slurm array, ``--launcher local``, a second shell) can share one study: a run that
another live process trains is skipped and its holder named.
"""

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from siamlab.config.study import RunSpec
from siamlab.errors import ResultsError, SiamlabError
from siamlab.preemption import STOP_SIGNALS, StopFlag, stop_on_signals
from siamlab.results.holder import Holder
from siamlab.results.runlock import RunLockedError, ensure_folder, run_lock
from siamlab.results.runstate import STOPPED_COLLAPSED, write_state
from siamlab.results.store import open_run
from siamlab.results.verdicts import verdict_from_attrs
from siamlab.run.train_run import RunOutcome, train_run
from siamlab.study.changed_config import refuse_changed_runs
from siamlab.train.loop import Preempted
from siamlab.train.speed import recorded_precision


@dataclass(frozen=True)
class StudyReport:
    """One line per run: its name, how it ended, its final numbers or error, its verdict.

    ``verdict``, ``onset_epoch`` and ``provisional`` are the run verdict its results
    file records (``""`` when it has none, e.g. a run that failed before its first
    evaluation); ``precision`` what its training forward ran (``fp32``, ``bf16+CL``;
    ``""`` when its file does not say); ``threads`` its CPU threads on a CPU (0: on a
    GPU, or not recorded).
    """

    name: str
    status: str
    summary: dict[str, float]
    error: str = ""
    user_error: bool = False  # bad input the user can fix (data, config, folder)
    verdict: str = ""
    onset_epoch: int = 0
    provisional: bool = False
    precision: str = ""
    threads: int = 0


def _quiet(message: str) -> None:
    """Ranks other than 0 say nothing."""


def with_verdict(report: StudyReport, spec: RunSpec) -> StudyReport:
    """``report`` with the run verdict, precision and threads of the run's ``metrics.nc``."""
    try:
        attrs = open_run(spec.directory()).attrs
    except ResultsError:
        return report
    precision = recorded_precision(attrs)
    threads = attrs.get("threads", 0) if attrs.get("device") == "cpu" else 0
    report = dataclasses.replace(report, precision=precision, threads=int(threads))
    found = verdict_from_attrs(attrs)
    if not found.verdict:
        return report
    return dataclasses.replace(
        report,
        verdict=found.verdict,
        onset_epoch=found.onset_epoch,
        provisional=found.provisional,
    )


def run_status(spec: RunSpec) -> str | None:
    """The status recorded in a run's results, or None when it has none."""
    try:
        return str(open_run(spec.directory()).attrs.get("status"))
    except ResultsError:
        return None


def ended_as(spec: RunSpec, resume_stopped: bool = False) -> str:
    """How a run that needs no more training ended (``finished``, ``stopped_collapsed``).

    Args:
        spec: the run.
        resume_stopped: a run stopped on collapse is to be trained on (not done).

    Returns:
        its status, or "" when the run is still to be trained (or resumed).
    """
    status = run_status(spec)
    if status == "finished" or (status == STOPPED_COLLAPSED and not resume_stopped):
        return status
    return ""


@contextlib.contextmanager
def _claim(spec: RunSpec, main: bool, log: Callable[[str], None]) -> Iterator[str]:
    """Lock the run (rank 0); yields '' when this job trains it, else why not.

    Under torchrun every rank learns rank 0's answer, so all skip or all train.
    """
    with contextlib.ExitStack() as stack:
        why = ""
        if main:
            try:
                lock = stack.enter_context(run_lock(spec.directory()))
            except RunLockedError as exc:
                why = str(exc)
            else:
                if lock.stale is not None:
                    log(f"{spec.directory()}: took over the stale lock of {lock.stale.describe()}")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from siamlab.train.device import join_job
            from siamlab.train.distributed import any_rank

            join_job(spec.config.train)
            if any_rank(bool(why)) and not why:
                why = "locked by another process (rank 0 says)"
        yield why


def _several_processes() -> bool:
    """Under torchrun with N > 1 a run that fails ends the job.

    A failure may be one rank's alone (its disk, its share of corrupt images) while the
    others wait in a collective of the same run; going on to the next run would leave
    them there until the collective's timeout. The process ends instead, torchrun stops
    the others, and a rerun resumes the study (finished runs are skipped).
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _stop_asked(flag: StopFlag) -> bool:
    """Whether a stop signal came, to this process or (under torchrun) to any other.

    Every rank then leaves the remaining runs, where one that missed the signal would
    go on to the next run's collectives alone.
    """
    from siamlab.train.distributed import any_rank

    return any_rank(flag())


def _train(spec: RunSpec, flag: StopFlag, progress: bool, main: bool) -> StudyReport:
    """Train one claimed run and record how it ended in its state file (rank 0)."""
    name = f"{spec.variant}/seed{spec.seed}"
    me = Holder.me()

    def mark(state: str, error: str = "") -> None:
        if main:
            write_state(
                spec.directory(),
                state=state,
                pid=me.pid,
                host=me.host,
                **({"job_id": me.job_id} if me.job_id else {}),  # keep a launcher's id
                error=error,
            )

    mark("running")
    try:
        outcome: RunOutcome = train_run(spec, progress=progress, should_stop=flag)
    except Preempted:
        mark("preempted")
        return StudyReport(name, "preempted", {})
    except SiamlabError as exc:
        mark("failed", str(exc))
        if _several_processes():
            raise
        return StudyReport(name, "failed", {}, str(exc), user_error=True)
    except Exception as exc:  # noqa: BLE001 - report, keep the other runs going
        mark("failed", repr(exc))
        if _several_processes():
            raise
        return StudyReport(name, "failed", {}, repr(exc))
    mark(outcome.status)
    return StudyReport(name, outcome.status, outcome.summary)


def run_study(
    runs: list[RunSpec],
    progress: bool = True,
    log: Callable[[str], None] = print,
    signals: tuple[int, ...] = STOP_SIGNALS,
    resume_stopped: bool = False,
) -> list[StudyReport]:
    """Execute ``runs`` in order; a failing run is reported and the others still run.

    Each run is locked while it trains; one locked by another live process is
    reported as ``locked`` (its holder named) and left alone. ``signals`` (SIGTERM,
    SIGINT; on Slurm also SIGUSR1/2) stop the current run cleanly after its current
    step (checkpoint and results written); the remaining runs are ``not started``.
    Finished runs are skipped, and so are runs stopped on collapse (reported
    ``stopped_collapsed``) unless ``resume_stopped``: then they resume from their
    checkpoint and train to their last epoch.

    Raises:
        ConfigError: a run has results of another config (nothing is trained; see
            :mod:`siamlab.study.changed_config`).
        ResultsError: the study folder cannot be created or written.
    """
    refuse_changed_runs(runs)
    reports: list[StudyReport] = []
    flag = StopFlag()
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 holds the locks
    if main:
        ensure_folder(runs[0].directory().parent.parent)
    else:
        log = _quiet
    with stop_on_signals(flag, signals):
        for spec in runs:
            name = f"{spec.variant}/seed{spec.seed}"
            if _stop_asked(flag):
                reports.append(StudyReport(name, "not started", {}))
                continue
            with _claim(spec, main, log) as why:
                if why:
                    log(f"{name}: skipped, {why}")
                    reports.append(StudyReport(name, "locked", {}, why))
                elif (ended := ended_as(spec, resume_stopped)) == "finished":
                    log(f"{name}: finished earlier, skipped ({spec.directory()})")
                    reports.append(StudyReport(name, "skipped", {}))
                elif ended:
                    log(
                        f"{name}: stopped on collapse earlier, skipped ({spec.directory()}); "
                        "--resume-stopped trains it to its last epoch"
                    )
                    reports.append(StudyReport(name, ended, {}))
                else:
                    reports.append(_train(spec, flag, progress, main))
                    if reports[-1].status == "preempted":
                        log(
                            f"{name}: stopped on request; checkpoint written, "
                            "re-run the same command to resume"
                        )
                    elif reports[-1].status == STOPPED_COLLAPSED:
                        log(
                            f"{name}: collapsed, stopped early (train.stop_on_collapse); "
                            "checkpoint written, --resume-stopped trains it to its last epoch"
                        )
                    elif reports[-1].status == "failed":
                        log(f"{name}: FAILED: {reports[-1].error}")
                if main and reports[-1].status != "locked":  # the summary's verdict
                    reports[-1] = with_verdict(reports[-1], spec)
    return reports
