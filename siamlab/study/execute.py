"""Run every variant x seed of a study: skip finished runs, resume others, survive failures."""

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from siamlab.config.study import RunSpec
from siamlab.errors import ResultsError, SiamlabError
from siamlab.preemption import StopFlag, stop_on_signals
from siamlab.results.lock import study_lock
from siamlab.results.store import open_run
from siamlab.run.train_run import RunOutcome, train_run
from siamlab.train.loop import Preempted


@dataclass(frozen=True)
class StudyReport:
    """One line per run: its name, how it ended, its final numbers or error."""

    name: str
    status: str
    summary: dict[str, float]
    error: str = ""
    user_error: bool = False  # bad input the user can fix (data, config, folder)


def _quiet(message: str) -> None:
    """Ranks other than 0 say nothing."""


def run_status(spec: RunSpec) -> str | None:
    """The status recorded in a run's results, or None when it has none."""
    try:
        return str(open_run(spec.directory()).attrs.get("status"))
    except ResultsError:
        return None


def run_study(
    runs: list[RunSpec],
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[StudyReport]:
    """Execute ``runs`` in order; a failing run is reported and the others still run.

    Holds the study folder's lock throughout. SIGTERM/SIGINT stop the current run
    cleanly after its current step (checkpoint and results written); the remaining
    runs are reported as ``not started``.

    Raises:
        ResultsError: another process is running this study, or its folder is not
            writable.
    """
    reports: list[StudyReport] = []
    flag = StopFlag()
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 holds the lock
    lock = study_lock(runs[0].directory().parent.parent) if main else contextlib.nullcontext()
    if not main:
        log = _quiet
    with lock, stop_on_signals(flag):
        for spec in runs:
            name = f"{spec.variant}/seed{spec.seed}"
            if flag():
                reports.append(StudyReport(name, "not started", {}))
                continue
            if run_status(spec) == "finished":
                log(f"{name}: finished earlier, skipped ({spec.directory()})")
                reports.append(StudyReport(name, "skipped", {}))
                continue
            try:
                outcome: RunOutcome = train_run(spec, progress=progress, should_stop=flag)
            except Preempted as exc:
                log(
                    f"{name}: stopped on request after step {exc.step}; checkpoint written, "
                    "re-run the same command to resume"
                )
                reports.append(StudyReport(name, "preempted", {}))
                continue
            except SiamlabError as exc:
                log(f"{name}: FAILED: {exc}")
                reports.append(StudyReport(name, "failed", {}, str(exc), user_error=True))
                continue
            except Exception as exc:  # noqa: BLE001 - report, keep the other runs going
                log(f"{name}: FAILED with an unexpected error: {exc!r}")
                reports.append(StudyReport(name, "failed", {}, repr(exc)))
                continue
            reports.append(StudyReport(name, outcome.status, outcome.summary))
    return reports
