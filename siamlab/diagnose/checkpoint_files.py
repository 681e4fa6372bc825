"""Which checkpoint files ``siamlab diagnose`` reads, and the epoch of each.

The target is a checkpoint file, a siamlab run folder (its ``checkpoints/last.pt``) or a
folder of checkpoint files of one run, one per epoch (siamlab keeps only the last
checkpoint of a run; the reference implementation writes ``checkpoint_%04d.pth.tar`` every
epoch, other frameworks similar names).

A checkpoint's epoch is, first, the one stored in it: ``epoch`` (the reference code stores
the epochs completed; :class:`~siamlab.evaluation.checkpoints.LoadedCheckpoint`), or for
siamlab's own files the last epoch its recorder completed. Failing that, the last number
in the file name: the one after ``epoch`` / ``ep`` (``epoch=7-step=300.ckpt`` -> 7), else the
last number not glued to letters before it (``checkpoint_0042.pth.tar`` -> 42; the 18 of
``resnet18.pth`` is no epoch). A single file with neither is epoch 1 and says so; in a
folder every file must have one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from siamlab.errors import ResultsError
from siamlab.train.checkpoint import CHECKPOINT_FILE

SUFFIXES = (".pt", ".pth", ".tar", ".ckpt", ".bin")  # .pth.tar ends in .tar
_EPOCH = re.compile(r"(?<![A-Za-z])(?:epoch|ep)[=_\-]?(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![A-Za-z\d])\d+")  # not glued to letters: resnet18 is no epoch


@dataclass(frozen=True)
class Epoch:
    """A checkpoint's epoch and where it was read from.

    Attributes:
        value: the 1-based epoch (epochs completed).
        source: ``stored`` (in the file), ``name`` (the file name) or ``unknown`` (taken as 1).
    """

    value: int
    source: str


def epoch_in_name(path: Path) -> int | None:
    """The epoch a file name gives (module docstring), None for none."""
    stem = path.name
    while Path(stem).suffix.lower() in SUFFIXES:
        stem = stem[: -len(Path(stem).suffix)]
    labelled = _EPOCH.findall(stem)
    numbers = labelled or _NUMBER.findall(stem)
    return int(numbers[-1]) if numbers else None


def epoch_of(path: Path, stored: int | None) -> Epoch:
    """The epoch of the checkpoint at ``path`` (``stored``: the one read from the file)."""
    if stored is not None:
        return Epoch(int(stored), "stored")
    named = epoch_in_name(path)
    return Epoch(named, "name") if named is not None else Epoch(1, "unknown")


def _describe(folder: Path) -> str:
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
    return f"it holds: {shown}" if entries else "it is empty"


def list_checkpoints(target: str | Path) -> list[Path]:
    """The checkpoint files of ``target``: a file, a run folder, or a folder of checkpoints.

    Raises:
        ResultsError: ``target`` does not exist, or is a folder without checkpoints.
    """
    target = Path(target)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise ResultsError(f"no checkpoint at {target}: no such file or folder")
    last = target / "checkpoints" / CHECKPOINT_FILE
    if last.is_file():
        return [last]
    files = sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ResultsError(
            f"no checkpoint in {target}: expected a checkpoint file, a siamlab run folder "
            f"(checkpoints/{CHECKPOINT_FILE}) or a folder of one run's checkpoint files "
            f"({', '.join('*' + s for s in SUFFIXES)}); {_describe(target)}"
        )
    return files


def check_epochs(epochs: dict[Path, Epoch]) -> None:
    """Raise unless every file of a folder has its own known epoch.

    Raises:
        ResultsError: naming the files without an epoch, or two files of one epoch.
    """
    if len(epochs) < 2:
        return
    unknown = [p.name for p, e in epochs.items() if e.source == "unknown"]
    if unknown:
        raise ResultsError(
            f"cannot tell the epoch of {', '.join(unknown[:5])}: neither the file nor its name "
            "holds one. Name the files with their epoch (checkpoint_0010.pth.tar) or "
            "diagnose them one at a time."
        )
    seen: dict[int, str] = {}
    for path, e in epochs.items():
        if e.value in seen:
            raise ResultsError(
                f"{seen[e.value]} and {path.name} are both epoch {e.value}: a folder must "
                "hold the checkpoints of one run, one per epoch"
            )
        seen[e.value] = path.name
