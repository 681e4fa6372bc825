"""Build the eta target provider a run's config asks for."""

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from siamlab.data.batched import BatchedTwoViewDataset
from siamlab.data.plan import BatchPlan
from siamlab.data.view_memo import ViewMemo
from siamlab.data.views import TwoViewDataset
from siamlab.eta.cached import CachedTargets, ViewLoader
from siamlab.eta.config import CachedEtaConfig, EtaConfig, MovingAverageEtaConfig
from siamlab.eta.moving_average import MovingAverageTargets
from siamlab.eta.provider import TargetProvider
from siamlab.eta.table import EtaTable
from siamlab.preemption import leave_signals_to_the_main_process
from siamlab.train.distributed import DistInfo


def view_loader(
    dataset: TwoViewDataset, num_workers: int, memo: ViewMemo | None = None
) -> ViewLoader:
    """A function loading the views of given batches of an epoch (same keys as training).

    Resident views (``data.device_resident``) make the batches on the device, as in
    training, and put them in ``memo`` for the training steps to take; otherwise a
    DataLoader with ``num_workers`` loads them.
    """

    def load(epoch: int, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        views = copy.copy(dataset)  # its own epoch; the training dataset is untouched
        views.set_epoch(epoch)
        if isinstance(views, BatchedTwoViewDataset) and views.resident:
            for ks in batches:
                batch = views.batch(ks)  # views (B, 3, S, S) each, on the device
                if memo is not None:
                    memo.put(epoch, ks, batch)
                yield batch[0], batch[1]
            return
        for x1, x2, _, _ in DataLoader(
            views,
            batch_sampler=batches,
            num_workers=num_workers,
            worker_init_fn=leave_signals_to_the_main_process,
        ):
            yield x1, x2

    return load


def create_targets(
    cfg: EtaConfig,
    model: nn.Module,
    dataset: TwoViewDataset,
    plan: BatchPlan,
    total_steps: int,
    dim: int,
    run_dir: Path,
    device: torch.device,
    num_workers: int = 0,
    dist: DistInfo | None = None,
    memo: ViewMemo | None = None,
) -> TargetProvider | None:
    """The provider for ``cfg.mode`` (None for ``off``: SimSiam's own targets).

    Under torchrun, ``plan`` holds this rank's shares of the batches; a memmap table is
    one file per node (``node<k>/``), created and written by the node's local rank 0.
    ``memo``: where the k-step cache pass leaves its resident batches for training.
    """
    dist = dist or DistInfo()
    if isinstance(cfg, CachedEtaConfig):
        k = plan.steps_per_epoch if cfg.k == "epoch" else cfg.k
        load = view_loader(dataset, num_workers, memo)
        return CachedTargets(model, plan, load, k, total_steps, device)
    if isinstance(cfg, MovingAverageEtaConfig):
        folder = Path(cfg.path) if cfg.path else run_dir / "eta"
        if dist.world_size > 1:
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size))
            folder = folder / f"node{dist.rank // per_node}"
        writer = dist.local_rank == 0
        table = EtaTable(len(dataset), dim, cfg.dtype, cfg.storage, folder, writer)
        return MovingAverageTargets(table, cfg.momentum)
    return None


# The eta modes this module builds a provider for (``off`` builds none); the names of
# siamlab.eta.config.ETA_CONFIGS, checked equal by tests/test_registry.py.
ETA_PROVIDERS: dict[str, type[TargetProvider] | None] = {
    "off": None,
    "cached": CachedTargets,
    "moving_average": MovingAverageTargets,
}
