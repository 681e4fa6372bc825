"""One checkpointer for a run: a list of named stateful parts, saved and restored together.

The parts are the model, the optimiser, the recorder, torch's CPU random stream, the
run's creation time, the monitor's hook state and the eta source (see
:func:`siamlab.run.assemble.build_run`). Under torchrun rank 0 writes ``last.pt``;
a part marked ``per_rank`` (cached eta: each process caches its own share of the
batches) is written by every rank to its own file beside it, and one marked
``every_rank`` (a memmap eta table: each process keeps the slot map of the checkpointed
generation) has its ``state_dict`` called on every rank, rank 0's being saved; the
ranks meet before ``last.pt`` names the new generation. Each save is followed by the
results that match it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch

from siamlab.atomic import atomic_write
from siamlab.data.fingerprint import HAND_OVER, hashes_pixels, same_images
from siamlab.errors import ResultsError, SiamlabError
from siamlab.provenance import config_diff
from siamlab.run.results_file import ResultsFile
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.distributed import DistInfo, any_rank


class Stateful(Protocol):
    """Anything with a state to save and restore (a module, an optimiser, a hook...)."""

    def state_dict(self) -> Any:
        """The part's state (picklable)."""
        ...

    def load_state_dict(self, state: Any) -> Any:
        """Restore what :meth:`state_dict` returned."""
        ...


@dataclass(frozen=True)
class Part:
    """A named stateful part.

    ``per_rank``: each process keeps and saves its own state. ``every_rank``: each
    process's ``state_dict`` must run at a checkpoint (it marks a generation), but
    rank 0's state is the one saved.
    """

    name: str
    obj: Stateful
    per_rank: bool = False
    every_rank: bool = False


class CpuRandomStream:
    """torch's global CPU generator as a part (the loader draws its seeds from it)."""

    def state_dict(self) -> torch.Tensor:
        """The generator's state."""
        return torch.get_rng_state()

    def load_state_dict(self, state: torch.Tensor) -> None:
        """Continue the stream where the checkpoint left it."""
        torch.set_rng_state(state)


def _save(value: object, path: Path) -> None:
    torch.save(value, path)


# Config keys a run may resume under a changed value of: where results go, whether it
# stops on collapse (that changes when training ends, never what it computes), where
# its batches are made (the same views; siamlab.data.resident), how the DataLoader
# hands them over (page-locked, loaded ahead, workers kept: the same values; not the
# number of workers, which moves the batched augmentation between the training
# process's threads and one-thread workers), and its CPU threads (it continues on the
# checkpoint's count unless one is set, with a warning where a set count differs:
# siamlab.train.device.resume_threads).
RESUMABLE = (
    "output.",
    "train.stop_on_collapse:",
    "data.device_resident:",
    *(f"data.{key}:" for key in HAND_OVER),
    "train.threads:",
)
# Where the images are: it may change when the images there are the ones the run
# trained on, which a fingerprint of their pixels tells (siamlab.data.fingerprint; one
# of image files' names does not)
DATA_WHERE = ("data.root:",)


def read_checkpoint(directory: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of the run in ``directory`` (None without one), if its config matches.

    Keys in :data:`RESUMABLE` may differ, and :data:`DATA_WHERE` in a checkpoint that
    records a fingerprint of its images' pixels (:func:`check_same_data` then compares
    them).

    Raises:
        ResultsError: the checkpoint is unreadable or holds another config.
    """
    state = load_checkpoint(directory / "checkpoints")
    if state is None:
        return None
    moves = DATA_WHERE if hashes_pixels(str(state.get("data_fingerprint", ""))) else ()
    diffs = [
        d for d in config_diff(state["config"], config) if not d.startswith((*RESUMABLE, *moves))
    ]
    if diffs:
        raise ResultsError(
            f"{directory} holds a checkpoint of a different config; refusing to resume. "
            "Differences:\n  "
            + "\n  ".join(diffs)
            + "\nDelete the folder to start over, or change output.root."
        )
    return state


def check_same_data(state: dict[str, Any], fingerprint: str, directory: Path) -> None:
    """Refuse to resume the checkpoint ``state`` on other images than it trained on.

    A checkpoint from before the fingerprint (2026-12-07) is not compared.

    Raises:
        ResultsError: the fingerprints differ.
    """
    saved = state.get("data_fingerprint")
    if saved and not same_images(saved, fingerprint):
        raise ResultsError(
            f"{directory} holds a checkpoint trained on other images than data.root now "
            f"holds (trained on {saved}; now {fingerprint}); refusing to resume. Point "
            "data.root back at the run's images, or delete the folder to start over."
        )


class Checkpointer:
    """Saves the parts, then the matching results; restores the parts.

    Args:
        directory: the run's folder (checkpoints go to ``checkpoints/``).
        config: the run's config as JSON-like data (stored for the resume check).
        parts: the stateful parts, by name.
        results: written after each checkpoint.
        dist: this process's place in the job.
        data_fingerprint: which images the run trains on (checked on resume).
    """

    def __init__(
        self,
        directory: Path,
        config: dict[str, Any],
        parts: Sequence[Part],
        results: ResultsFile,
        dist: DistInfo,
        data_fingerprint: str = "",
    ) -> None:
        self.folder = directory / "checkpoints"
        self.config, self.parts, self.results, self.dist = config, tuple(parts), results, dist
        self.data_fingerprint = data_fingerprint

    def _own_file(self, part: Part, step: int) -> Path | None:
        """Where ``part`` of the checkpoint after ``step`` is saved by this rank alone.

        None: in ``last.pt``. The step in the name ties each rank's file to the
        ``last.pt`` that names that step: a kill while ``last.pt`` is written leaves the
        previous one beside the files of its own step.
        """
        if part.per_rank and self.dist.world_size > 1:
            return self.folder / f"{part.name}-rank{self.dist.rank}-step{step}.pt"
        return None

    def _drop_older(self, part: Part, kept: Path) -> None:
        """Remove this rank's files of ``part`` other than ``kept`` (after ``last.pt`` moved on)."""
        mine = f"{part.name}-rank{self.dist.rank}"
        for old in [*self.folder.glob(f"{mine}-step*.pt"), self.folder / f"{mine}.pt"]:
            if old != kept:
                old.unlink(missing_ok=True)

    def save(self, step: int, status: str) -> None:
        """Checkpoint after 1-based ``step``, then results with ``status`` (the others wait)."""
        # threads: the CPU count the run trained with (siamlab.train.device.resume_threads)
        state: dict[str, Any] = {
            "step": step,
            "config": self.config,
            "data_fingerprint": self.data_fingerprint,
            "threads": torch.get_num_threads(),
            "world_size": self.dist.world_size,
        }
        failed: Exception | None = None  # a failed write fails every rank, none waits on
        try:
            for part in self.parts:
                path = self._own_file(part, step)
                if path is None:
                    own = part.obj.state_dict() if self.dist.is_main or part.every_rank else None
                    state[part.name] = own if self.dist.is_main else None
                else:
                    atomic_write(path, partial(_save, part.obj.state_dict()))
                    state[part.name] = None
        except (OSError, SiamlabError) as exc:
            failed = exc
        self._together(failed)  # every rank's part is on disk before last.pt names it
        if self.dist.is_main:
            try:
                save_checkpoint(self.folder, state)
                self.results.write(status)
            except (OSError, SiamlabError) as exc:
                failed = exc
        self._together(failed)
        for part in self.parts:  # last.pt names this step on every rank now
            if (path := self._own_file(part, step)) is not None:
                self._drop_older(part, path)

    def _together(self, failed: Exception | None) -> None:
        """Wait for every rank; raise on each where any failed (``failed``: this one's).

        Raises:
            SiamlabError: this rank's failure, or another rank's (named by its log).
        """
        if not any_rank(failed is not None):
            return
        if isinstance(failed, SiamlabError):
            raise failed
        if failed is not None:
            raise ResultsError(
                f"cannot write the checkpoint in {self.folder}: {failed}"
            ) from failed
        raise ResultsError(
            f"another process could not write its part of the checkpoint in {self.folder} "
            "(its log says why); the previous checkpoint is kept"
        )

    def restore(self, state: dict[str, Any]) -> int:
        """Load every part from ``state`` (see :func:`read_checkpoint`); its step.

        Raises:
            ResultsError: a part kept per process, checkpointed by another number of
                processes than this job's, or a part's state missing.
        """
        saved = int(state.get("world_size", 0))
        own = [p.name for p in self.parts if p.per_rank or p.every_rank]
        if own and saved and saved != self.dist.world_size:
            raise ResultsError(
                f"the checkpoint in {self.folder} was written by {saved} process(es) and "
                f"keeps {', '.join(own)} per process; this job has {self.dist.world_size}. "
                f"Resume it with {saved} (torchrun --nproc-per-node {saved}), or delete the "
                "run's folder to start over"
            )
        for part in self.parts:
            path = self._own_file(part, int(state["step"]))
            if path is not None and not path.is_file():  # written before 2026-12-07
                path = self.folder / f"{part.name}-rank{self.dist.rank}.pt"
            if path is not None and not path.is_file():
                raise ResultsError(
                    f"checkpoint in {self.folder} has no {part.name!r} file of process "
                    f"{self.dist.rank} for its step {state['step']}; delete the run's folder "
                    "to start over"
                )
            if path is not None:
                part.obj.load_state_dict(torch.load(path, weights_only=False))
            elif state.get(part.name) is not None:
                part.obj.load_state_dict(state[part.name])
            else:
                raise ResultsError(
                    f"checkpoint in {self.folder} has no {part.name!r} state; delete the "
                    "run's folder to start over"
                )
        return int(state["step"])


@dataclass(frozen=True)
class SaveSchedule:
    """When to checkpoint: every N epochs and at the end, and every M steps if asked.

    A step that ends an epoch is saved after the epoch's diagnostics instead.
    """

    checkpointer: Checkpointer
    every_epochs: int
    every_steps: int | None
    steps_per_epoch: int

    def after_step(self, step: int) -> None:
        """Save mid-epoch every ``every_steps`` steps."""
        every = self.every_steps
        if every and step % every == 0 and step % self.steps_per_epoch:
            self.checkpointer.save(step, "running")

    def after_epoch(self, epoch: int, step: int, is_last: bool) -> None:
        """Save every ``every_epochs`` epochs and after the last one (``finished``)."""
        if epoch % self.every_epochs == 0 or is_last:
            self.checkpointer.save(step, "finished" if is_last else "running")
