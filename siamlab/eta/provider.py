"""What the trainer asks of a target source, and shared helpers."""

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from siamlab.models.siamese import SiameseOutput


class TargetProvider(Protocol):
    """Replaces the targets of a forward pass (``SiameseOutput.t1/t2``) by eta."""

    def before_step(self, step: int) -> None:
        """Called before 0-based global ``step`` is taken."""
        ...

    def apply(
        self, out: SiameseOutput, idx: torch.Tensor, step: int
    ) -> tuple[SiameseOutput, dict[str, float]]:
        """Return ``out`` with targets for images ``idx`` (B,), and statistics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        ...


def with_targets(out: SiameseOutput, t1: torch.Tensor, t2: torch.Tensor) -> SiameseOutput:
    """``out`` with its target fields replaced by eta (B, d).

    Not detached here: eta is built from stored values, so it carries no graph by
    construction, and the stop-gradient is decided by
    :func:`siamlab.objectives.stop_gradient` alone.
    """
    return out._replace(t1=t1, t2=t2)


def unit_distances(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """||new/||new|| - old/||old|||| per row of (B, d) tensors: (B,)."""
    return (F.normalize(new, dim=1) - F.normalize(old, dim=1)).norm(dim=1)


def unit_drift(new: torch.Tensor, old: torch.Tensor) -> float:
    """Mean ||new/||new|| - old/||old|||| over rows (B, d); NaN for no rows."""
    if new.shape[0] == 0:
        return float("nan")
    return float(unit_distances(new, old).mean())


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine between rows of (B, d) tensors; NaN for no rows."""
    if a.shape[0] == 0:
        return float("nan")
    return float(F.cosine_similarity(a.float(), b.float(), dim=1).mean())


class frozen_bn_statistics:  # noqa: N801 - used as a context manager
    """Restore every buffer (BN running statistics) of ``model`` on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.saved: dict[str, torch.Tensor] = {}

    def __enter__(self) -> None:
        self.saved = {name: b.clone() for name, b in self.model.named_buffers()}

    def __exit__(self, *exc: object) -> None:
        buffers = dict(self.model.named_buffers())
        with torch.no_grad():
            for name, value in self.saved.items():
                buffers[name].copy_(value)
