"""Who a process is (pid, host, Slurm job) and whether that process is still alive.

Run locks and run-state files name their holder this way, so a message can say who
trains a run and a lock or state left by a dead process or job can be recognised.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass

from siamlab.provenance import now

_SLURM_ID = re.compile(r"^\d+(_\d+)?$")


def current_job_id() -> str:
    """This process's Slurm job id (``<array job>_<task>`` for array tasks), or ''."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID", "")


def slurm_job_active(job_id: str) -> bool | None:
    """True while Slurm still lists the job (pending, running, ...); None when unknown."""
    if not _SLURM_ID.match(job_id) or shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # "Invalid job id specified": gone from the queue
        return False if "Invalid job id" in out.stderr else None
    return bool(out.stdout.strip())


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """A process that holds (or held) a run: pid, host, Slurm job id, since when."""

    pid: int = 0
    host: str = ""
    job_id: str = ""
    since: str = ""

    @classmethod
    def me(cls) -> "Holder":
        """This process."""
        return cls(os.getpid(), socket.gethostname(), current_job_id(), now())

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        """A holder from its JSON text; None for an empty or unreadable text."""
        try:
            raw = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return None
        if not isinstance(raw, dict):
            return None
        return cls(
            int(raw.get("pid", 0)),
            str(raw.get("host", "")),
            str(raw.get("job_id", "")),
            str(raw.get("since", "")),
        )

    def to_json(self) -> str:
        """The holder as one JSON line."""
        return json.dumps(asdict(self))

    def alive(self) -> bool:
        """Whether the holder may still be running.

        A Slurm job is asked of Slurm; a pid on this host is asked of the kernel; a
        pid on another host without a job id cannot be checked and counts as alive.
        """
        if self.job_id:
            active = slurm_job_active(self.job_id)
            if active is not None:
                return active
        if self.host == socket.gethostname():
            return pid_alive(self.pid)
        return True

    def describe(self) -> str:
        """``pid 12 on host, Slurm job 34_1, since ...`` for messages."""
        job = f", Slurm job {self.job_id}" if self.job_id else ""
        return f"pid {self.pid} on {self.host or '?'}{job}, since {self.since or '?'}"
