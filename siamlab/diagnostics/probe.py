"""Eval-mode passes over fixed probe sets, shared by all epoch-level diagnostics.

:class:`EvalFeatures` is the only way diagnostics reach the model: it embeds data under
``no_grad`` in eval mode and leaves parameters, buffers (BN running statistics) and
gradients untouched, restoring every module's train/eval flag afterwards. The same pass
can record the pooled outputs of the backbone's stages for chosen rows
(:class:`~siamlab.diagnostics.stage_capture.StageCapture`).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from siamlab.diagnostics.geometry import sampled_rows
from siamlab.diagnostics.stage_capture import StageCapture, stage_modules
from siamlab.models.siamese import Embedding
from siamlab.train.distributed import all_gather_cat, is_distributed

EmbedFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""One batch of images (B, 3, H, W) -> its h (B, C), z (B, d), p (B, d), e.g. ``model.embed``."""


@dataclass(frozen=True)
class ProbeEmbeddings:
    """Backbone features h (N, C), projector outputs z (N, d), predictions p (N, d), labels (N,).

    ``stages``: the pooled output (K, C_k) of each backbone stage for the K rows that
    were asked for (``stage_rows`` of :func:`embed_dataset`, in that order); () if none.
    """

    h: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor
    labels: torch.Tensor
    stages: tuple[torch.Tensor, ...] = ()


def fixed_subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The ``limit`` samples of :func:`sampled_rows` (deterministic)."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    return Subset(dataset, sampled_rows(n, limit).tolist())


@torch.no_grad()
def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 512,
    stage_rows: torch.Tensor | None = None,
    *,
    embed: EmbedFn | None = None,
) -> ProbeEmbeddings:
    """Run ``model.embed`` (or ``embed``) over ``dataset`` in eval mode (BN: running stats).

    Items of ``dataset`` start with ``(image, label)`` (siamlab's eval sets add the index).
    Every module's train/eval flag is restored afterwards. Under torchrun each rank embeds
    every world_size-th sample and the result is gathered, in the dataset's order, on
    every rank.

    Args:
        model: the Siamese network (``embed(x)`` -> h, z, p; ``backbone.stages()``).
        dataset: yields (image, label, index).
        device: where its batches go.
        batch_size: batch of the pass.
        embed: computes h, z, p of a batch instead of ``model.embed`` (another library's
            model); stages are recorded only from a siamlab backbone.
        stage_rows: rows (positions in ``dataset``) whose pooled stage outputs the same
            pass records (``ProbeEmbeddings.stages``, in this order); None = none.
    """
    if not is_distributed():
        return embed_dataset_local(model, dataset, device, batch_size, stage_rows, embed=embed)
    n, rank, world = len(dataset), dist.get_rank(), dist.get_world_size()  # type: ignore[arg-type]
    keep = _row_mask(n, stage_rows)  # (N,)
    local = None if keep is None else keep[rank::world].nonzero().flatten()
    mine = embed_dataset_local(
        model, Subset(dataset, range(rank, n, world)), device, batch_size, local, embed=embed
    )
    order = torch.cat([torch.arange(r, n, world) for r in range(world)]).argsort()
    h, z, p, y = (all_gather_cat(t)[order] for t in (mine.h, mine.z, mine.p, mine.labels))
    stages: tuple[torch.Tensor, ...] = ()
    if keep is not None and stage_rows is not None:
        held = torch.cat([torch.arange(r, n, world)[keep[r::world]] for r in range(world)])
        pick = _lookup(held, stage_rows)  # gathered row of each wanted row
        stages = tuple(all_gather_cat(t)[pick] for t in mine.stages)
    return ProbeEmbeddings(h, z, p, y, stages)


@torch.no_grad()
def embed_dataset_local(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 512,
    stage_rows: torch.Tensor | None = None,
    *,
    embed: EmbedFn | None = None,
) -> ProbeEmbeddings:
    """:func:`embed_dataset` in this process only."""
    embed_fn: Callable[[torch.Tensor], Embedding] = embed or model.embed  # type: ignore[assignment]
    keep = _row_mask(len(dataset), stage_rows)  # type: ignore[arg-type]
    capture = StageCapture(stage_modules(model) if keep is not None else [])
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    hs, zs, ps, ys, start = [], [], [], [], 0
    try:
        with capture:
            for x, y, *_ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                h, z, p = embed_fn(x.to(device))
                if keep is not None:
                    capture.keep(keep[start : start + len(y)])  # this batch's rows
                start += len(y)
                hs.append(h.float().cpu())  # (B, C)
                zs.append(z.float().cpu())  # (B, d)
                ps.append(p.float().cpu())  # (B, d)
                ys.append(torch.as_tensor(y))
    finally:
        for module, training in modes:  # exactly as before, sub-module by sub-module
            module.training = training
    stages = capture.outputs()  # rows where keep, ascending
    if keep is not None and stage_rows is not None and stages:
        pick = _lookup(keep.nonzero().flatten(), stage_rows)
        stages = tuple(t[pick] for t in stages)
    return ProbeEmbeddings(torch.cat(hs), torch.cat(zs), torch.cat(ps), torch.cat(ys), stages)


def _row_mask(n: int, rows: torch.Tensor | None) -> torch.Tensor | None:
    """A bool mask (n,) of ``rows``, or None for no rows."""
    if rows is None:
        return None
    keep = torch.zeros(n, dtype=torch.bool)
    keep[rows] = True
    return keep


def _lookup(held: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """The position in ``held`` (distinct row numbers) of each of ``wanted``."""
    ordered, perm = held.sort()
    return perm[torch.searchsorted(ordered, wanted)]


class EvalFeatures:
    """Eval-mode embeddings of a model, computed without changing it.

    Built once by the run assembly; epoch hooks reach the model only through it (by way
    of :class:`ProbeCache`).

    Args:
        model: the Siamese network (``embed(x)`` -> h, z, p); it is put in eval mode for
            the passes.
        device: where its batches go.
        embed: what computes h, z, p of a batch (default ``model.embed``): a model of
            another library (:class:`siamlab.monitor.CollapseMonitor`).
    """

    def __init__(
        self, model: nn.Module, device: torch.device, embed: EmbedFn | None = None
    ) -> None:
        self._model, self.device, self._embed = model, device, embed

    def embed(
        self, dataset: Dataset, batch_size: int, stage_rows: torch.Tensor | None = None
    ) -> ProbeEmbeddings:
        """h, z, p, labels (and stage outputs of ``stage_rows``) of ``dataset`` in eval mode.

        See :func:`embed_dataset`.
        """
        return embed_dataset(
            self._model, dataset, self.device, batch_size, stage_rows, embed=self._embed
        )

    def predictor_has_parameters(self) -> bool:
        """Whether the predictor is not an identity (see :func:`has_parameters`)."""
        return has_parameters(getattr(self._model, "predictor", None))


def has_parameters(part: object) -> bool:
    """Whether ``part`` is a module with parameters or buffers (False for None, identity).

    DirectPred and DirectCopy have no parameters; their W_p is a buffer.
    """
    if not isinstance(part, nn.Module):
        return False
    return any(True for _ in part.parameters()) or any(True for _ in part.buffers())


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
        self._stage_sets: set[str] = set()  # sets whose stage outputs will be asked for
        self._stages: dict[str, tuple[torch.Tensor, ...]] = {}

    def get(self, name: str) -> ProbeEmbeddings:
        """Embeddings of probe set ``name``.

        ``bank``: the train split under the test transform (kNN bank); ``test``: the test
        split (kNN queries, held-out std); ``probe``: a fixed subset of the train split under
        the test transform (spectra, ranks; ``diagnostics.probe_size`` samples).
        """
        if name not in self._cache:
            rows = self._rows_of_cached(self._sets[name])
            self._cache[name] = rows if rows is not None else self._embed(name)
        return self._cache[name]

    def expect_stages(self, names: Iterable[str]) -> None:
        """Record the stage outputs of sets ``names`` in the first pass that holds their rows.

        The monitor calls it before the epoch's hooks run, with the sets its due hooks
        read through :meth:`stages` (``stage_probe``), so the kNN bank's pass records the
        probe set's stage outputs on its way and :meth:`stages` needs no pass of its own.
        """
        self._stage_sets.update(names)

    def stages(self, name: str) -> tuple[torch.Tensor, ...]:
        """Pooled output (N, C_k) of each backbone stage on probe set ``name``, input to output.

        () for a model whose backbone declares no stages. Without :meth:`expect_stages`
        (or when no pass held the set's rows) this is one more pass over the set.
        """
        if name not in self._stages:
            self._stage_sets.add(name)
            self._cache.setdefault(name, self._embed(name))
        return self._stages[name]

    def _embed(self, name: str) -> ProbeEmbeddings:
        """A pass over set ``name`` that also records the stage outputs still expected."""
        dataset = self._sets[name]
        rows = {
            other: found
            for other in sorted(self._stage_sets - self._stages.keys())
            if (found := _positions(self._sets[other], dataset)) is not None
        }
        emb = self._features.embed(
            dataset, self._batch, torch.cat(list(rows.values())) if rows else None
        )
        start = 0
        for other, found in rows.items():  # emb.stages holds their rows one set after the other
            self._stages[other] = tuple(t[start : start + len(found)] for t in emb.stages)
            start += len(found)
        return emb

    def _rows_of_cached(self, dataset: Dataset) -> ProbeEmbeddings | None:
        """``dataset``'s embeddings taken from an already embedded superset, if any.

        The probe set and the kNN bank are seeded subsets (same permutation) of the same
        training split, so when the bank was embedded this epoch the probe set is a
        selection of its rows: no second pass over the data.
        """
        for name, emb in self._cache.items():
            rows = _positions(dataset, self._sets[name])
            if rows is not None:
                return ProbeEmbeddings(emb.h[rows], emb.z[rows], emb.p[rows], emb.labels[rows])
        return None


def _positions(inner: Dataset, outer: Dataset) -> torch.Tensor | None:
    """The rows of ``outer`` that hold ``inner``'s samples, in ``inner``'s order (or None)."""
    base, wanted = _base_and_indices(inner)
    other_base, have = _base_and_indices(outer)
    if other_base is not base:
        return None
    position = {index: row for row, index in enumerate(have)}
    if not all(i in position for i in wanted):
        return None
    return torch.tensor([position[i] for i in wanted], dtype=torch.long)


def _base_and_indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The underlying dataset and the indices into it (a Subset's, or all of them)."""
    if isinstance(dataset, Subset):
        return dataset.dataset, list(dataset.indices)
    return dataset, list(range(len(dataset)))  # type: ignore[arg-type]
