"""``<run>/state.json``: where a run stands, written by whoever submits or trains it.

``metrics.nc`` holds a run's numbers and how training ended; this small file adds
what the results cannot know: that a run is queued (and as which Slurm job), which
process trains it (pid, host, job id), where its log is, how many steps it will
take, and why it failed. ``siamlab status`` reads both.
"""

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from siamlab.atomic import atomic_write
from siamlab.provenance import now

STATE_FILE = "state.json"
# A run that ``train.stop_on_collapse`` ended: done unless ``siamlab run --resume-stopped``.
STOPPED_COLLAPSED = "stopped_collapsed"


@dataclass(frozen=True)
class RunState:
    """The launcher's and trainer's view of one run.

    Attributes:
        state: ``queued``, ``running``, ``finished``, ``stopped_collapsed``,
            ``diverged``, ``preempted`` or ``failed`` (as last written; a dead
            ``running`` reads as stopped).
        job_id: the Slurm job (``<array>_<task>``) or local submitit job.
        pid: the training process (rank 0).
        host: where it runs.
        log: the job's log file, when a launcher made one.
        total_steps: the planned number of steps (0 before the run starts).
        requeues: how often the job was requeued after a preemption or time limit.
        error: why the run failed.
        updated: when this file was written.
    """

    state: str = "queued"
    job_id: str = ""
    pid: int = 0
    host: str = ""
    log: str = ""
    total_steps: int = 0
    requeues: int = 0
    error: str = ""
    updated: str = ""


def read_state(run_dir: str | Path) -> RunState | None:
    """The run's state file, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads((Path(run_dir) / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    known = {f.name for f in fields(RunState)}
    return RunState(**{k: v for k, v in raw.items() if k in known})


def write_state(run_dir: str | Path, **changes: Any) -> RunState:
    """Update the run's state file with ``changes`` (atomically; creates the folder)."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = replace(read_state(folder) or RunState(), **changes, updated=now())
    text = json.dumps(asdict(state), indent=1)

    def dump(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(folder / STATE_FILE, dump)
    return state
