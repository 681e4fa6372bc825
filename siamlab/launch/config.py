"""``cluster.yaml``: the Slurm resources of every run of a study (typed and validated).

One run is one array task of ``nodes`` x ``gpus_per_node`` processes (one per GPU,
at least one on CPU-only nodes). Keys follow ``sbatch``'s options.
"""

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from siamlab.errors import ConfigError

_TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?$")


class ClusterConfig(BaseModel):
    """Slurm resources and options of each run's job.

    Attributes:
        partition: ``--partition`` (None: the cluster's default).
        account: ``--account``.
        qos: ``--qos``.
        time: wall-clock limit per job, minutes or ``[D-]HH:MM[:SS]``; a run that
            needs longer is requeued at the limit and resumes from its checkpoint.
        nodes: nodes per run.
        gpus_per_node: GPUs per node; one training process per GPU (0: one CPU process).
        cpus_per_task: CPU cores per process: torch's CPU threads of a run whose config
            leaves ``train.threads`` unset (its DataLoader workers share these cores).
        mem: memory per node, e.g. ``64G`` (None: the cluster's default).
        constraint: ``--constraint``, e.g. ``a100``.
        array_parallelism: at most this many runs of the study at once.
        max_requeues: give a run up after this many preemptions or time limits.
        signal_delay_s: Slurm signals a job this long before its time limit.
        sbatch: any other sbatch option, name -> value (``{exclusive: true}``).
        setup: shell lines run before training (``module load cuda``, ``source venv``).
    """

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int = Field(default=24 * 60, ge=1)
    nodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=1, ge=1)
    mem: str | None = None
    constraint: str | None = None
    array_parallelism: int = Field(default=256, ge=1)
    max_requeues: int = Field(default=10, ge=0)
    signal_delay_s: int = Field(default=120, ge=0)
    sbatch: dict[str, str | int | bool] = Field(default_factory=dict)
    setup: list[str] = Field(default_factory=list)

    @field_validator("time", mode="before")
    @classmethod
    def _minutes(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.isdigit():
            return value
        match = _TIME.match(value.strip())
        if match is None:
            raise ValueError(f"time {value!r}: give minutes or [D-]HH:MM[:SS], e.g. 2-00:00:00")
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)

    @property
    def tasks_per_node(self) -> int:
        """Training processes per node: one per GPU, one on a CPU-only node."""
        return max(1, self.gpus_per_node)

    def submitit_parameters(self) -> dict[str, Any]:
        """Parameters for ``submitit.SlurmExecutor.update_parameters`` (sbatch options)."""
        optional = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "mem": self.mem,
            "constraint": self.constraint,
            "gpus_per_node": self.gpus_per_node or None,
        }
        return {
            "time": self.time,
            "nodes": self.nodes,
            "ntasks_per_node": self.tasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism,
            **{k: v for k, v in optional.items() if v is not None},
            "additional_parameters": dict(self.sbatch),
            "setup": list(self.setup),
        }


def read_cluster(path: str | Path | None) -> ClusterConfig:
    """Read and check a cluster file; None gives the defaults.

    Raises:
        ConfigError: the file is missing, not YAML, or has a wrong key or value.
    """
    if path is None:
        return ClusterConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return ClusterConfig.model_validate(raw)
    except FileNotFoundError:
        why = "not found (see launch/cluster.example.yaml for its keys)"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        why = f"is not a readable YAML file: {exc}"
    except ValidationError as exc:
        why = "is invalid:\n  " + "\n  ".join(_describe(e) for e in exc.errors())
    raise ConfigError(f"cluster file {path} {why}")


def _describe(error: Any) -> str:
    """One pydantic error as a line naming the key (a typo gets the nearest valid key)."""
    import difflib

    key = ".".join(str(p) for p in error["loc"]) or "the file (a mapping of keys)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] != "extra_forbidden":
        shown = "" if error["type"] == "value_error" else f" (got {error.get('input')!r})"
        return f"{key}: {message}{shown}"
    keys = sorted(ClusterConfig.model_fields)
    near = "".join(f"; did you mean {k!r}?" for k in difflib.get_close_matches(key, keys, n=1))
    return f"unknown key {key!r}{near} (valid keys: {', '.join(keys)})"
