"""The work of one submitit job: train its runs with the study executor.

A job's processes (one per GPU) learn their rank, world size, local rank and
rendezvous from submitit's JobEnvironment, exported as the variables torchrun sets,
so training takes the same DDP path as under torchrun. On Slurm's warning signal
(USR1/USR2, before a time limit or preemption) or SIGTERM the run checkpoints as it
always does; then submitit's checkpoint protocol requeues the job (:meth:`checkpoint`),
which resumes the run exactly. A run that failed on bad input is not requeued, nor
one requeued ``max_requeues`` times.
"""

import dataclasses
import os
import signal
from dataclasses import dataclass

from siamlab.config.study import RunSpec
from siamlab.preemption import SLURM_STOP_SIGNALS
from siamlab.results.runstate import write_state
from siamlab.study.execute import StudyReport, run_study
from siamlab.train.device import set_default_threads


def join_submitit_job() -> None:
    """Export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT of this submitit task."""
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@dataclass
class RunTask:
    """A picklable callable: ``RunTask(...)(runs)`` trains ``runs`` one after another.

    Attributes:
        max_requeues: requeues allowed per job before it is given up.
        requeues: requeues so far (counted in the resubmitted task).
        progress: show a progress bar (local jobs writing to a terminal log).
        resume_stopped: train runs stopped on collapse on to their end
            (``siamlab run --resume-stopped``).
        threads: torch's CPU threads for the job's runs whose ``train.threads`` is unset
            (the local launcher's share of the cores, the Slurm launcher's
            ``cpus_per_task``; None: torch's default). A run it resumes continues on its
            checkpoint's count instead.
    """

    max_requeues: int = 10
    requeues: int = 0
    progress: bool = False
    resume_stopped: bool = False
    threads: int | None = None

    def __call__(self, runs: list[RunSpec]) -> list[StudyReport]:
        """Train ``runs``; after a clean stop on a signal, ask submitit to requeue."""
        join_submitit_job()
        if self.threads:
            set_default_threads(self.threads)
        usr2 = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue
        reports = run_study(
            runs,
            progress=self.progress,
            log=_log,
            signals=SLURM_STOP_SIGNALS,
            resume_stopped=self.resume_stopped,
        )
        preempted = [r for r in reports if r.status in ("preempted", "not started")]
        if preempted and int(os.environ.get("RANK", "0")) == 0 and callable(usr2):
            for spec in runs:
                if any(r.name == f"{spec.variant}/seed{spec.seed}" for r in preempted):
                    write_state(spec.directory(), requeues=self.requeues + 1)
            signal.signal(signal.SIGUSR2, usr2)
            os.kill(os.getpid(), signal.SIGUSR2)  # submitit: checkpoint(), requeue, exit
        return reports

    def checkpoint(self, runs: list[RunSpec]) -> object:
        """Submitit's requeue hook: the same runs again (they resume), or None to stop.

        Returns:
            a ``submitit.helpers.DelayedSubmission`` of this task with one more
            requeue counted, or None once ``max_requeues`` is reached.
        """
        import submitit

        if self.requeues >= self.max_requeues:
            _log(f"given up after {self.requeues} requeues (cluster.yaml max_requeues)")
            return None
        again = dataclasses.replace(self, requeues=self.requeues + 1)
        return submitit.helpers.DelayedSubmission(again, runs)


def _log(message: str) -> None:
    print(message, flush=True)
