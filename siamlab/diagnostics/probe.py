"""Eval-mode passes over fixed probe sets, shared by all epoch-level diagnostics.

:class:`EvalFeatures` is the only way diagnostics reach the model: it embeds data under
``no_grad`` in eval mode and leaves parameters, buffers (BN running statistics) and
gradients untouched, restoring every module's train/eval flag afterwards.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from siamlab.models.siamese import Embedding
from siamlab.train.distributed import all_gather_cat, is_distributed


@dataclass(frozen=True)
class ProbeEmbeddings:
    """Backbone features h (N, C), projector outputs z (N, d), predictions p (N, d), labels (N,)."""

    h: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor
    labels: torch.Tensor


def fixed_subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` samples under a fixed seeded permutation (deterministic)."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit]
    return Subset(dataset, order.sort().values.tolist())


@torch.no_grad()
def embed_dataset(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 512
) -> ProbeEmbeddings:
    """Run ``model.embed`` over ``dataset`` in eval mode (BN uses running statistics).

    Every module's train/eval flag is restored afterwards. Under torchrun each rank embeds
    every world_size-th sample and the result is gathered, in the dataset's order, on
    every rank.
    """
    if is_distributed():
        n, rank, world = len(dataset), dist.get_rank(), dist.get_world_size()  # type: ignore[arg-type]
        mine = embed_dataset_local(
            model, Subset(dataset, range(rank, n, world)), device, batch_size
        )
        order = torch.cat([torch.arange(r, n, world) for r in range(world)]).argsort()
        h, z, p, y = (all_gather_cat(t)[order] for t in (mine.h, mine.z, mine.p, mine.labels))
        return ProbeEmbeddings(h, z, p, y)
    return embed_dataset_local(model, dataset, device, batch_size)


@torch.no_grad()
def embed_dataset_local(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 512
) -> ProbeEmbeddings:
    """:func:`embed_dataset` in this process only."""
    embed: Callable[[torch.Tensor], Embedding] = model.embed  # type: ignore[assignment]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    hs, zs, ps, ys = [], [], [], []
    try:
        for x, y, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            e = embed(x.to(device))
            hs.append(e.h.float().cpu())  # (B, C)
            zs.append(e.z.float().cpu())  # (B, d)
            ps.append(e.p.float().cpu())  # (B, d)
            ys.append(y)
    finally:
        for module, training in modes:  # exactly as before, sub-module by sub-module
            module.training = training
    return ProbeEmbeddings(torch.cat(hs), torch.cat(zs), torch.cat(ps), torch.cat(ys))


class EvalFeatures:
    """Eval-mode embeddings of a model, computed without changing it.

    Built once by the run assembly; epoch hooks reach the model only through it (by way
    of :class:`ProbeCache`).

    Args:
        model: the Siamese network (``embed(x)`` -> h, z, p).
        device: where its batches go.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self._model, self.device = model, device

    def embed(self, dataset: Dataset, batch_size: int) -> ProbeEmbeddings:
        """h, z, p and labels of ``dataset`` in eval mode (see :func:`embed_dataset`)."""
        return embed_dataset(self._model, dataset, self.device, batch_size)

    def predictor_has_parameters(self) -> bool:
        """Whether the predictor is not an identity: it has parameters or buffers.

        DirectPred and DirectCopy have no parameters; their W_p is a buffer.
        """
        predictor = getattr(self._model, "predictor", None)
        if not isinstance(predictor, nn.Module):
            return False
        return any(True for _ in predictor.parameters()) or any(True for _ in predictor.buffers())


class ProbeCache:
    """Computes each probe set's embeddings at most once per epoch, on demand.

    Args:
        features: the model's eval-mode features.
        sets: probe set name -> dataset.
        batch_size: batch of the eval-mode passes.
    """

    def __init__(self, features: EvalFeatures, sets: dict[str, Dataset], batch_size: int) -> None:
        self._features, self._sets, self._batch = features, sets, batch_size
        self.device = features.device  # where hooks do their float64 linear algebra
        self._cache: dict[str, ProbeEmbeddings] = {}

    def get(self, name: str) -> ProbeEmbeddings:
        """Embeddings of probe set ``name``.

        ``bank``: the train split under the test transform (kNN bank); ``test``: the test
        split (kNN queries, held-out std); ``probe``: a fixed subset of the train split under
        the test transform (spectra, ranks; ``diagnostics.probe_size`` samples).
        """
        if name not in self._cache:
            rows = self._rows_of_cached(self._sets[name])
            if rows is not None:
                self._cache[name] = rows
            else:
                self._cache[name] = self._features.embed(self._sets[name], self._batch)
        return self._cache[name]

    def _rows_of_cached(self, dataset: Dataset) -> ProbeEmbeddings | None:
        """``dataset``'s embeddings taken from an already embedded superset, if any.

        The probe set and the kNN bank are seeded subsets (same permutation) of the same
        training split, so when the bank was embedded this epoch the probe set is a
        selection of its rows: no second pass over the data.
        """
        base, wanted = _base_and_indices(dataset)
        for name, emb in self._cache.items():
            other_base, have = _base_and_indices(self._sets[name])
            if other_base is not base:
                continue
            position = {index: row for row, index in enumerate(have)}
            if all(i in position for i in wanted):
                rows = torch.tensor([position[i] for i in wanted], dtype=torch.long)
                return ProbeEmbeddings(emb.h[rows], emb.z[rows], emb.p[rows], emb.labels[rows])
        return None


def _base_and_indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The underlying dataset and the indices into it (a Subset's, or all of them)."""
    if isinstance(dataset, Subset):
        return dataset.dataset, list(dataset.indices)
    return dataset, list(range(len(dataset)))  # type: ignore[arg-type]
