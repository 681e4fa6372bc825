"""``siamlab run --launcher local --jobs N``: N runs of a study at once on one machine.

Through submitit's LocalExecutor: N jobs, each training its share of the unfinished
runs (round-robin) one after another. With GPUs, job i sees GPU i mod #GPUs
(CUDA_VISIBLE_DEVICES); on CPU the cores are split: each job's runs get cores // N
torch threads unless their config sets ``train.threads`` (the job's default count, not
written into the configs, so a run it resumes continues on its checkpoint's count).
Logs go to ``<study>/.submitit/``.
"""

from collections.abc import Callable

from siamlab.config.study import RunSpec
from siamlab.launch.plan import import_submitit, mark_queued, pending_runs, record_job
from siamlab.launch.task import RunTask
from siamlab.study.execute import StudyReport
from siamlab.train.device import usable_cores

WEEK_MIN = 7 * 24 * 60  # the local executor kills a job at its time limit


def job_threads(jobs: int) -> int:
    """Each of ``jobs`` CPU jobs' share of the cores this process may use (at least 1)."""
    return max(1, usable_cores() // jobs)


def run_local(
    runs: list[RunSpec],
    jobs: int,
    gpus: int,
    log: Callable[[str], None] = print,
    resume_stopped: bool = False,
) -> list[StudyReport]:
    """Train the study's unfinished runs in ``jobs`` local jobs; wait for all of them.

    Args:
        runs: the study's runs.
        jobs: how many run at once.
        gpus: GPUs on this machine (0: CPU; the threads are split instead).
        log: where progress messages go.
        resume_stopped: runs stopped on collapse count as unfinished.

    Returns:
        one report per submitted run, read back from the jobs (or their results).

    Raises:
        ConfigError: submitit is not installed.
    """
    submitit = import_submitit()
    pending = pending_runs(runs, log, resume_stopped)
    if not pending:
        return []
    jobs = min(jobs, len(pending))
    threads = None if gpus else job_threads(jobs)
    executor = submitit.LocalExecutor(folder=runs[0].directory().parent.parent / ".submitit")
    shares = [pending[i::jobs] for i in range(jobs)]
    submitted = []
    for i, share in enumerate(shares):
        gpu = {"visible_gpus": [i % gpus], "gpus_per_node": 1} if gpus else {}
        executor.update_parameters(timeout_min=WEEK_MIN, **gpu)
        mark_queued(share)
        job = executor.submit(RunTask(resume_stopped=resume_stopped, threads=threads), share)
        record_job(share, f"local {job.job_id}", str(job.paths.stdout))
        submitted.append((job, share))
        log(f"job {job.job_id}: {', '.join(f'{s.variant}/seed{s.seed}' for s in share)}")
    reports: list[StudyReport] = []
    for job, share in submitted:
        try:
            reports += job.result()
        except Exception as exc:  # noqa: BLE001 - the job died: say so for each of its runs
            why = f"job {job.job_id} died (log: {job.paths.stderr}): {exc}"
            reports += [StudyReport(f"{s.variant}/seed{s.seed}", "failed", {}, why) for s in share]
    return reports
