"""``siamlab run --launcher slurm``: one Slurm job array, one task per unfinished run.

Each task is one run on ``nodes`` x ``gpus_per_node`` processes (see
:mod:`siamlab.launch.task`); submitit writes the sbatch script, its logs go to
``<study>/.submitit/``. Each process trains on ``cpus_per_task`` torch CPU threads
unless a run's config sets ``train.threads`` (torch's own default would take every core
of a shared node, or its affinity mask, whatever Slurm gave). The launcher returns once
the array is submitted: follow the study with ``siamlab status``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from siamlab.config.study import RunSpec
from siamlab.launch.config import ClusterConfig
from siamlab.launch.plan import import_submitit, mark_queued, pending_runs, record_job
from siamlab.launch.task import RunTask


@dataclass(frozen=True)
class Submission:
    """What was (or, in a dry run, would be) submitted."""

    parameters: dict[str, object]  # submitit SlurmExecutor parameters (sbatch options)
    runs: list[RunSpec]
    job_ids: list[str]  # empty in a dry run
    logs: Path


def describe(sub: Submission) -> list[str]:
    """The submission as lines: the sbatch options, then one line per run."""
    lines = [f"sbatch options (submitit SlurmExecutor), logs in {sub.logs}:"]
    lines += [f"  {key}: {value}" for key, value in sub.parameters.items() if value != {}]
    threads = sub.parameters["cpus_per_task"]  # RunTask's default count (submit_slurm)
    lines.append(
        f"torch CPU threads per process: {threads} (cpus_per_task; train.threads overrides)"
    )
    lines.append(f"array of {len(sub.runs)} task(s), one per run:")
    ids = sub.job_ids or ["-"] * len(sub.runs)
    lines += [
        f"  {job:>10}  {s.variant}/seed{s.seed}  -> {s.directory()}"
        for job, s in zip(ids, sub.runs, strict=True)
    ]
    return lines


def submit_slurm(
    runs: list[RunSpec],
    cluster: ClusterConfig,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    resume_stopped: bool = False,
) -> Submission:
    """Submit the study's unfinished runs as one array (nothing in a dry run).

    ``resume_stopped``: runs stopped on collapse count as unfinished.

    Raises:
        ConfigError: submitit is not installed (not needed for a dry run).
    """
    pending = pending_runs(runs, log, resume_stopped, trains_here=False)  # on the nodes
    logs = runs[0].directory().parent.parent / ".submitit"
    parameters: dict[str, object] = {
        "job_name": f"siamlab-{runs[0].study}",
        **cluster.submitit_parameters(),
    }
    if dry_run or not pending:
        return Submission(parameters, pending, [], logs)
    submitit = import_submitit()
    executor = submitit.SlurmExecutor(folder=logs, max_num_timeout=cluster.max_requeues)
    executor.update_parameters(**parameters)
    task = RunTask(
        max_requeues=cluster.max_requeues,
        resume_stopped=resume_stopped,
        threads=cluster.cpus_per_task,
    )
    mark_queued(pending)
    with executor.batch():
        jobs = [executor.submit(task, [spec]) for spec in pending]
    for spec, job in zip(pending, jobs, strict=True):
        record_job([spec], str(job.job_id), str(job.paths.stdout))
    return Submission(parameters, pending, [str(j.job_id) for j in jobs], logs)
