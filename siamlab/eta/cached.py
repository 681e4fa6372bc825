"""k-step alternation (paper Sec. 5.2): targets cached for k SGD steps.

The targets eta of the images of the next k SGD steps are computed once (current theta,
one augmentation each, no gradient) and cached; theta then trains k steps against them.
k = 1 is SimSiam (docs/paper-recipes.md#k-step-alternation).
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from siamlab.data.plan import BatchPlan
from siamlab.eta.provider import frozen_bn_statistics, mean_cosine, unit_drift, with_targets
from siamlab.models.siamese import SiameseOutput

# (epoch, list of batches) -> iterator of (x1, x2) for those batches, in order
ViewLoader = Callable[[int, list[list[int]]], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class CachedTargets:
    """Targets of every image of a window of k steps, computed at its start.

    Each image keeps the two views' z from its first step in the window (train-mode
    BN over that same batch, so k = 1 is SimSiam exactly); the BN running statistics
    are restored after the cache pass. :class:`~siamlab.train.step.SimSiamStep` calls
    :meth:`before_step` under the training forward's autocast, so that also holds at bf16.

    Args:
        model: the Siamese network (its forward gives z1, z2).
        plan: the batches of every global step.
        load_views: loads the views of given batches of an epoch.
        k: steps per window (``plan.steps_per_epoch`` for "epoch"; windows then
            start at epoch boundaries).
        total_steps: the run's last step (windows are clipped to it).
        device: where the model runs.
    """

    per_rank_state = True  # each process caches its own share of the batches

    def __init__(
        self,
        model: nn.Module,
        plan: BatchPlan,
        load_views: ViewLoader,
        k: int,
        total_steps: int,
        device: torch.device,
    ) -> None:
        self.model, self.plan, self.load_views = model, plan, load_views
        self.k, self.total_steps, self.device = k, total_steps, device
        self.window_start = -1
        self.rows: dict[int, int] = {}
        self.cache = torch.empty(0)  # (M, 2, d): the two views' z of each image
        self.last_drift = float("nan")

    def _window(self, step: int) -> list[tuple[int, list[list[int]]]]:
        """The window's batches grouped by epoch, in step order."""
        groups: list[tuple[int, list[list[int]]]] = []
        for s in range(step, min(step + self.k, self.total_steps)):
            epoch, batch = self.plan.batch(s)
            if not groups or groups[-1][0] != epoch:
                groups.append((epoch, []))
            groups[-1][1].append(batch)
        return groups

    @torch.no_grad()
    def _refresh(self, step: int) -> None:
        rows: dict[int, int] = {}
        chunks: list[torch.Tensor] = []
        with frozen_bn_statistics(self.model):
            for epoch, batches in self._window(step):
                views = self.load_views(epoch, batches)
                for batch, (x1, x2) in zip(batches, views, strict=True):
                    out = self.model(x1.to(self.device), x2.to(self.device))
                    z = torch.stack([out.z1, out.z2], dim=1).float().cpu()  # (B, 2, d)
                    new = [j for j, i in enumerate(batch) if i not in rows]
                    for j in new:
                        rows[batch[j]] = len(rows)
                    chunks.append(z[new])
        cache = torch.cat(chunks)  # (M, 2, d)
        shared = [i for i in rows if i in self.rows]
        if shared:
            new_rows = torch.tensor([rows[i] for i in shared])
            old_rows = torch.tensor([self.rows[i] for i in shared])
            self.last_drift = unit_drift(cache[new_rows, 0], self.cache[old_rows, 0])
        else:
            self.last_drift = float("nan")
        self.rows, self.cache, self.window_start = rows, cache, step

    def before_step(self, step: int) -> None:
        """Refresh at the start of every window (and after a resume without a cache)."""
        if step % self.k == 0 or self.window_start < 0 or step >= self.window_start + self.k:
            self._refresh(step)

    def apply(
        self, out: SiameseOutput, idx: torch.Tensor, step: int
    ) -> tuple[SiameseOutput, dict[str, float]]:
        """Targets t1, t2 = the cached z of view 1 and view 2 of each image."""
        rows = torch.tensor([self.rows[int(i)] for i in idx])
        cached = self.cache[rows].to(out.z1.device, out.z1.dtype)  # (B, 2, d)
        t1, t2 = cached[:, 0], cached[:, 1]
        stats = {
            "eta_cosine": mean_cosine(out.z1.detach(), t1),
            "eta_age": float(step - self.window_start),
            "eta_drift": self.last_drift if step == self.window_start else float("nan"),
        }
        return with_targets(out, t1, t2), stats

    def state_dict(self) -> dict[str, Any]:
        """The current window's cache (resume continues inside the window)."""
        return {"window_start": self.window_start, "rows": dict(self.rows), "cache": self.cache}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.window_start, self.rows, self.cache = (
            state["window_start"],
            dict(state["rows"]),
            state["cache"],
        )
