"""Where every run of a study stands, read from the run folders themselves.

Works with or without Slurm: ``metrics.nc`` says how training ended (and its step
and run verdict so far), ``state.json`` who queued or trains the run, and the run's lock
whether that holder is still alive. A run whose holder died without writing an end
reads as ``stopped`` (re-run the study to resume it); one that ``train.stop_on_collapse``
ended as ``stopped_collapsed`` (``siamlab run --resume-stopped`` trains it on); one whose
``metrics.nc`` cannot be read as ``unreadable`` (re-running the study rewrites it from
the run's last checkpoint).
"""

from dataclasses import dataclass
from pathlib import Path

from siamlab.errors import ResultsError
from siamlab.results.holder import slurm_job_active
from siamlab.results.runlock import lock_holder
from siamlab.results.runstate import STOPPED_COLLAPSED, RunState, read_state
from siamlab.results.store import METRICS_FILE, open_run
from siamlab.results.verdicts import PROVISIONAL, verdict_from_attrs

ENDED = ("finished", STOPPED_COLLAPSED, "diverged", "preempted")
UNREADABLE = "unreadable"  # metrics.nc is there but cannot be read (a rerun rewrites it)
STATES = ("queued", "running", *ENDED, "failed", "stopped", UNREADABLE)


@dataclass(frozen=True)
class RunRow:
    """One run's line of ``siamlab status``."""

    name: str  # <variant>/seed<k>
    state: str  # one of STATES
    step: int  # steps recorded so far
    total: int  # planned steps (0: not known yet)
    verdict: str  # the run verdict of metrics.nc, "collapsed?" (? = provisional)
    job: str  # Slurm job id, or pid@host
    log: str


def _metrics(run_dir: Path) -> tuple[str, int, str]:
    """(status, steps recorded, run verdict) from metrics.nc; ('', 0, '') without one."""
    try:
        ds = open_run(run_dir)
    except ResultsError:
        return (UNREADABLE if (run_dir / METRICS_FILE).is_file() else ""), 0, ""
    found = verdict_from_attrs(ds.attrs)
    verdict = found.verdict + PROVISIONAL * found.provisional if found.verdict else ""
    return str(ds.attrs.get("status", "")), int(ds.sizes.get("step", 0)), verdict


def _state(run_dir: Path, status: str, info: RunState | None) -> str:
    """The run's state from its results, state file and lock (see module docstring)."""
    if lock_holder(run_dir) is not None:
        return "running"
    written = info.state if info else ""
    if written == "failed":
        return "failed"
    if status in (*ENDED, UNREADABLE):
        return status
    if written == "queued" and info is not None:
        alive = slurm_job_active(info.job_id) if info.job_id else None
        return "stopped" if alive is False else "queued"
    return "stopped" if status or written else "queued"


def run_row(run_dir: Path, study_dir: Path) -> RunRow:
    """The status line of one run folder."""
    info = read_state(run_dir)
    status, step, verdict = _metrics(run_dir)
    job = ""
    if info is not None:
        job = info.job_id or (f"pid {info.pid}" if info.pid else "")
    log = info.log if info else ""
    if log and Path(log).is_relative_to(study_dir.resolve()):
        log = str(Path(log).relative_to(study_dir.resolve()))
    return RunRow(
        f"{run_dir.parent.name}/{run_dir.name}",
        _state(run_dir, status, info),
        step,
        info.total_steps if info else 0,
        verdict,
        job,
        log,
    )


def study_status(study_dir: str | Path) -> list[RunRow]:
    """Every run folder of a study (``<variant>/seed<k>``), in name order.

    Raises:
        ResultsError: the folder does not exist, or is a results root or one run.
    """
    folder = Path(study_dir)
    if not folder.is_dir():
        raise ResultsError(f"{folder} is not a folder; give a study folder like results/stopgrad")
    runs = _run_folders(folder, "*/seed*")
    studies = [] if runs else sorted({p.parent.parent for p in _run_folders(folder, "*/*/seed*")})
    if studies:
        names = ", ".join(p.name for p in studies)
        raise ResultsError(
            f"{folder} is a results root holding the studies {names}; give one of them, "
            f"e.g. siamlab status {studies[0]}"
        )
    study = folder.parent.parent
    if not runs and folder.name.startswith("seed") and _run_folders(study, "*/seed*"):
        raise ResultsError(f"{folder} is one run; give its study folder, {study}")
    return [run_row(p, folder) for p in runs]


def _run_folders(folder: Path, pattern: str) -> list[Path]:
    """The run folders (with results or a state file) matching ``pattern`` below ``folder``."""
    return sorted(
        p
        for p in folder.glob(pattern)
        if p.is_dir() and ((p / METRICS_FILE).exists() or (p / "state.json").exists())
    )
