"""k-step alternation (paper Sec. 5.2): targets cached for k SGD steps.

The targets eta of the images of the next k SGD steps are computed once (current theta,
one augmentation each, no gradient) and cached; theta then trains k steps against them.
k = 1 is SimSiam (docs/paper-recipes.md#k-step-alternation).
"""

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from siamlab.data.plan import BatchPlan
from siamlab.eta.provider import frozen_bn_statistics, mean_cosine, unit_distances, with_targets
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
    # a checkpoint holds the window's start weights, not its cache, when the cache is
    # this many times larger than the model's state (a one-epoch window at ImageNet:
    # 21 GB of targets against ~100 MB of weights); a resume then makes the cache again
    WEIGHTS_WHEN_CACHE_EXCEEDS = 1.0

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
        self.weights: dict[str, torch.Tensor] | None = None  # the model at window_start
        self.pending: dict[str, torch.Tensor] | None = None  # restored, cache to remake
        self.state_bytes: int | None = None  # of the model's state, once known

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
        """Compute the window's targets; a window of the same images overwrites the cache.

        A window of one epoch holds every image, so at ImageNet scale the cache is
        (1.28M, 2, 2048) float32, 21 GB: the same images as the last window are written
        over their own rows (each read for the drift first), with no second cache.
        """
        window = self._window(step)
        images = list(dict.fromkeys(i for _, batches in window for b in batches for i in b))
        d = self.cache.shape[-1] if self.cache.dim() == 3 else None  # unknown before a pass
        weights = self._weights() if d is None or self._large(len(images) * 2 * d) else None
        in_place = len(images) == len(self.rows) and all(i in self.rows for i in images)
        rows = self.rows if in_place else {i: r for r, i in enumerate(images)}  # first visit
        cache: torch.Tensor | None = self.cache if in_place else None
        filled = np.zeros(len(images), dtype=bool)  # (M,) set in this window
        drifts: list[torch.Tensor] = []  # per image seen in the last window too
        with frozen_bn_statistics(self.model):
            for epoch, batches in window:
                views = self.load_views(epoch, batches)
                for batch, (x1, x2) in zip(batches, views, strict=True):
                    out = self.model(x1.to(self.device), x2.to(self.device))
                    z = torch.stack([out.z1, out.z2], dim=1).float().cpu()  # (B, 2, d)
                    first = [j for j, i in enumerate(batch) if not filled[rows[i]]]
                    ids = [batch[j] for j in first]
                    at = torch.tensor([rows[i] for i in ids], dtype=torch.long)  # (n,)
                    z = z[first]
                    seen = [k for k, i in enumerate(ids) if i in self.rows]
                    if seen:
                        before = self.cache[torch.tensor([self.rows[ids[k]] for k in seen]), 0]
                        drifts.append(unit_distances(z[seen, 0], before))  # read before writing
                    if cache is None:
                        cache = torch.empty(len(images), *z.shape[1:])  # (M, 2, d)
                    cache[at] = z
                    filled[at] = True
        self.last_drift = float(torch.cat(drifts).mean()) if drifts else float("nan")
        self.rows, self.window_start = rows, step
        self.cache = cache if cache is not None else torch.empty(0)
        self.weights = weights if weights is not None and self._large(self.cache.numel()) else None

    def _weights(self) -> dict[str, torch.Tensor]:
        """A host copy of the model's state (weights and BN buffers)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _large(self, values: int) -> bool:
        """Whether a cache of ``values`` float32 numbers is kept as weights, not as itself."""
        if self.state_bytes is None:  # the model's size does not change
            tensors = self.model.state_dict().values()
            self.state_bytes = sum(v.numel() * v.element_size() for v in tensors)
        return 4 * values > self.WEIGHTS_WHEN_CACHE_EXCEEDS * self.state_bytes

    def _remake(self) -> None:
        """The restored window's cache, made again from its start weights (a resume).

        The views are keyed by (seed, epoch, image) and the pass sees the same batches
        with the same weights, so the targets are those the window started with; the
        model's current state and the random streams are put back afterwards.
        """
        weights, self.pending = self.pending, None
        assert weights is not None  # before_step calls it only then
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        drift = self.last_drift
        try:
            self.model.load_state_dict(weights)
            self._refresh(self.window_start)
        finally:
            self.model.load_state_dict(current)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        self.last_drift = drift

    def before_step(self, step: int) -> None:
        """Refresh at the start of every window (and after a resume without a cache)."""
        if step % self.k == 0 or self.window_start < 0 or step >= self.window_start + self.k:
            self.pending = None
            self._refresh(step)
        elif self.pending is not None:  # resumed inside a window kept as its start weights
            self._remake()

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
        """The current window's cache, or its start weights for a large one.

        A resume continues inside the window either way.
        """
        state: dict[str, Any] = {"window_start": self.window_start, "drift": self.last_drift}
        if self.weights is not None:
            return {**state, "weights": self.weights}
        return {**state, "rows": dict(self.rows), "cache": self.cache}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.window_start = state["window_start"]
        self.last_drift = float(state.get("drift", float("nan")))
        if "weights" in state:  # the cache is made again at the next step
            self.rows, self.cache, self.pending = {}, torch.empty(0), state["weights"]
        else:
            self.rows, self.cache = dict(state["rows"]), state["cache"]
