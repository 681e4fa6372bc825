"""Moving-average eta (paper Sec. 5.2): one target per image, averaged over its visits.

Each image keeps eta_x, updated when x is sampled as eta_x <- m eta_x + (1-m)
F_theta(T'(x)); the loss compares F_theta(T(x)) with the stored eta_x
(docs/paper-recipes.md#moving-average-eta).
"""

from typing import Any

import torch

from siamlab.eta.provider import mean_cosine, unit_drift, with_targets
from siamlab.eta.table import EtaTable, RowBuffers
from siamlab.models.siamese import SiameseOutput
from siamlab.train.distributed import all_gather_cat, barrier, is_distributed


class MovingAverageTargets:
    """Per-image eta with momentum m, kept in an :class:`EtaTable`.

    Symmetric form: the target of p1 is m eta_x + (1 - m) z2 and that of p2 is
    m eta_x + (1 - m) z1 (so m = 0 is SimSiam's loss exactly); the stored eta_x becomes
    their mean, m eta_x + (1 - m) (z1 + z2) / 2. A first visit initialises eta_x
    (targets z2 and z1, i.e. plain SimSiam for that image). There is no pass of its
    own: z is the training forward's (under its autocast, in fp32), so m = 0 is SimSiam
    exactly at fp32 and bf16.

    Args:
        table: the per-image storage.
        momentum: m.
    """

    def __init__(self, table: EtaTable, momentum: float) -> None:
        self.table, self.m = table, momentum
        self._buffers: RowBuffers | None = None

    def _host(self, device: torch.device) -> RowBuffers:
        """The host buffers of a batch's stored rows (pinned when z lives on a GPU)."""
        if self._buffers is None:
            pin = device.type == "cuda"
            self._buffers = RowBuffers(self.table.dim, self.table.dtype, pin)
        return self._buffers

    def before_step(self, step: int) -> None:
        """Nothing to prepare: eta is updated as images are sampled."""

    def apply(
        self, out: SiameseOutput, idx: torch.Tensor, step: int
    ) -> tuple[SiameseOutput, dict[str, float]]:
        """Update eta for the batch's images and use it as their targets.

        The blend runs where z is (the GPU in a GPU run): only the batch's stored rows
        travel, in the table's dtype. The table stores values, so eta is built from
        copies of z without their graph (the stop-gradient of the loss is
        :func:`siamlab.objectives.stop_gradient`'s).
        """
        idx = idx.cpu()
        device = out.z1.device
        z1, z2 = (z.detach().float() for z in (out.z1, out.z2))  # (B, d)
        host = self._host(device)
        rows = self.table.gather(idx, out=host.get("old", len(idx)))  # (B, d) as stored
        old = rows.to(device, non_blocking=True).float()  # (B, d)
        seen = self.table.visited[idx]  # (B,)
        age = (step - self.table.last_step[idx][seen]).float()
        keep = torch.where(seen[:, None], self.m, 0.0).to(device)  # (B, 1); 0: first visit
        kept = keep * old  # old is 0 for a first visit (the table never read it)
        t1 = kept + (1 - keep) * z1
        t2 = kept + (1 - keep) * z2
        new = (t1 + t2) / 2
        cast = new if new.device.type == "cpu" else new.to(self.table.dtype)  # cast on the GPU
        stored = host.get("new", len(idx)).copy_(cast)  # (B, d) what the table keeps
        if is_distributed():  # every copy of the table gets every rank's rows
            self.table.write(all_gather_cat(idx), all_gather_cat(stored), step)
            barrier()  # a node's shared file is written before anyone reads it again
        else:
            self.table.write(idx, stored, step)
        stats = _stats(new, old, z1, seen.to(device))
        stats["eta_age"] = float(age.mean()) if len(age) else float("nan")
        dtype = out.z1.dtype
        return with_targets(out, t1.to(dtype), t2.to(dtype)), stats

    @property
    def every_rank_state(self) -> bool:
        """Every rank takes part in a checkpoint of a memmap table (its generation)."""
        return self.table.every_rank_state

    def state_dict(self) -> dict[str, Any]:
        """The table's state."""
        return {"table": self.table.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the table."""
        self.table.load_state_dict(state["table"])


def _stats(
    new: torch.Tensor, old: torch.Tensor, z1: torch.Tensor, seen: torch.Tensor
) -> dict[str, float]:
    """Drift of eta and cosine of z1 with it over the rows seen before (B, d), (B,)."""
    if not bool(seen.all()):  # a mask copies: only when some rows are first visits
        new, old, z1 = new[seen], old[seen], z1[seen]
    return {"eta_drift": unit_drift(new, old), "eta_cosine": mean_cosine(z1, old)}
