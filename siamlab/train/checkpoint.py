"""Checkpoints: everything that determines the rest of a run, written atomically."""

from pathlib import Path
from typing import Any

import torch

from siamlab.atomic import atomic_write
from siamlab.errors import ResultsError

CHECKPOINT_FILE = "last.pt"


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/last.pt`` (temp file + fsync + rename)."""
    path = Path(directory) / CHECKPOINT_FILE
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """Read ``directory/last.pt``; None when there is none.

    Raises:
        ResultsError: when the file exists but cannot be read.
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        raise ResultsError(
            f"checkpoint {path} is unreadable ({exc}); delete it to restart the run from scratch"
        ) from exc
    return state
