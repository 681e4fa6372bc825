"""Where a process trains: its device, its place in a torchrun job, torch's threads.

Used by every command that runs models (training, ``siamlab bench``, evaluation).
"""

import os
import warnings
from collections.abc import Mapping
from functools import cache
from typing import Any

import torch

from siamlab.errors import ConfigError, ResultsError
from siamlab.train.config import TrainConfig
from siamlab.train.distributed import DistInfo, init_from_env


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when present (this process's GPU under torchrun), else CPU.

    Raises:
        ConfigError: ``name`` is none of ``auto``, ``cpu``, ``cuda`` (e.g. ``--device``).
        ResultsError: ``cuda`` is asked but no CUDA device is visible.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not one of auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ResultsError("train.device=cuda but no CUDA device is visible; use auto or cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity mask (Linux), else all of them.

    Under Slurm or ``taskset`` the mask is the job's share, smaller than ``os.cpu_count``.
    """
    if hasattr(os, "sched_getaffinity"):  # not on macOS
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@cache
def default_threads() -> int:
    """Torch's CPU thread count before siamlab first set it (its default, or the user's)."""
    return torch.get_num_threads()


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads: ``threads``, or None = :func:`default_threads`.

    None restores the default rather than keeping what the process has, so a run of a
    study never inherits the ``train.threads`` of the run before it in the same process:
    on the CPU the thread count changes a run's float rounding (README, Speed).
    """
    default = default_threads()  # read before the first set
    torch.set_num_threads(threads or default)


def set_default_threads(threads: int) -> None:
    """Make ``threads`` what every later run of this process with ``train.threads`` unset gets.

    The local launcher's jobs share the machine's cores this way (cores // jobs each)
    rather than by writing ``train.threads`` into the runs' configs, so a run it resumes
    still continues on its checkpoint's count (:func:`resume_threads`).
    """
    default_threads.cache_clear()
    torch.set_num_threads(threads)
    default_threads()  # caches ``threads``


def checkpoint_threads(state: Mapping[str, Any]) -> int | None:
    """The CPU thread count a checkpoint's run trained on (None: not recorded).

    Its ``threads``; a checkpoint from before that key (2026-12-04) gives the
    ``train.threads`` its config set, as ``--launcher local`` then did for its runs.
    """
    recorded = state.get("threads", state.get("config", {}).get("train", {}).get("threads"))
    return recorded if isinstance(recorded, int) else None


def resume_threads(
    train: TrainConfig, device: torch.device, recorded: int | None, run: str, warn: bool = True
) -> None:
    """A CPU run resumed with ``train.threads`` unset continues on its checkpoint's count.

    On a CPU the kernels split their sums by thread, so only the count the run trained
    with continues it exactly (README, Speed, "Threads"). A count set in the config wins;
    where it differs from the checkpoint's, a warning says the run continues inexactly.
    A checkpoint's count above this process's default (another machine's, or a job's
    share of the cores) is kept, with a warning: threads beyond the free cores spin.

    Args:
        train: the run's train config.
        device: where it trains (CUDA kernels do not depend on the CPU threads).
        recorded: :func:`checkpoint_threads` of its checkpoint (None: no change).
        run: the run, as the warnings name it (its folder).
        warn: whether this process says so (one process of a torchrun job).
    """
    if device.type != "cpu" or recorded is None:
        return
    if train.threads is None:
        torch.set_num_threads(recorded)
        if recorded <= default_threads():
            return
        message = (
            f"{run} resumes on its checkpoint's {recorded} CPU threads (bit for bit), more "
            f"than the {default_threads()} this process has by default; if it runs slowly, "
            "set OMP_WAIT_POLICY=PASSIVE (the same count) or train.threads (inexact)"
        )
    elif train.threads != recorded:
        message = (
            f"{run}: its checkpoint trained on {recorded} CPU threads and it resumes on "
            f"train.threads={train.threads}: it continues at float rounding, not bit for bit "
            "(leave train.threads unset to continue on the checkpoint's count)"
        )
    else:
        return
    if warn:
        warnings.warn(message, stacklevel=2)


def configure_torch(train: TrainConfig) -> None:
    """Apply ``train.threads`` and ``train.deterministic`` to this process's torch."""
    set_threads(train.threads)
    if train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new tensor with NaN, a guard against kernels
        # that read memory they never wrote. Every kernel siamlab runs writes what it
        # reads (its own torch.empty buffers are written first), and the fill cost ~2% of
        # a quick-profile step, the reference loop's and siamlab's alike (README, Speed);
        # the suite's bit-equality tests (resume, two processes, the reference step) run
        # without it.
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def join_job(train: TrainConfig) -> tuple[torch.device, DistInfo]:
    """Configure torch, join the torchrun job if there is one; this process's device.

    Alone, the job is this process (rank 0 of 1).
    """
    configure_torch(train)
    dist = init_from_env(select_device(train.device).type)
    return select_device(train.device, dist.local_rank), dist
