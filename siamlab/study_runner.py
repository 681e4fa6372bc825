"""Run every variant x seed of a study: skip finished runs, resume others, survive failures."""

from collections.abc import Callable
from dataclasses import dataclass

from siamlab.config.study import RunSpec
from siamlab.errors import ResultsError, SiamlabError
from siamlab.results.store import open_run
from siamlab.run import RunOutcome, execute_run


@dataclass(frozen=True)
class StudyReport:
    """One line per run: its name, how it ended, its final numbers or error."""

    name: str
    status: str
    summary: dict[str, float]
    error: str = ""


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
    """Execute ``runs`` in order; a failing run is reported and the others still run."""
    reports = []
    for spec in runs:
        name = f"{spec.variant}/seed{spec.seed}"
        if run_status(spec) == "finished":
            log(f"{name}: finished earlier, skipped ({spec.directory()})")
            reports.append(StudyReport(name, "skipped", {}))
            continue
        try:
            outcome: RunOutcome = execute_run(spec, progress=progress)
        except SiamlabError as exc:
            log(f"{name}: FAILED: {exc}")
            reports.append(StudyReport(name, "failed", {}, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - report, keep the other runs going
            log(f"{name}: FAILED with an unexpected error: {exc!r}")
            reports.append(StudyReport(name, "failed", {}, repr(exc)))
            continue
        reports.append(StudyReport(name, outcome.status, outcome.summary))
    return reports
