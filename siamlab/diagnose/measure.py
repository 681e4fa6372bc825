"""Measure one checkpoint: the training run's epoch diagnostics on its eval-mode embeddings.

The epoch hooks that read embeddings only -- kNN, eval-mode std, centred geometry, spectra
(:data:`EMBEDDING_HOOKS`) -- are built from the registry exactly as a run builds them and
run on a :class:`~siamlab.diagnostics.probe.ProbeCache` of the same probe sets (kNN bank,
test split, probe set; same batch), so a checkpoint gives the numbers its run recorded at
that epoch. The hooks that need training -- loss, train-mode std, gradients, batch
geometry, the predictor alignment (its F is an average over training batches), eta -- have
nothing to read in a checkpoint and are left out.

What is measured follows what the checkpoint holds: the backbone features h always; z only
with the projector (siamlab and reference checkpoints), p only with the predictor. The heads
of a backbone-only checkpoint are random, so their values are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from siamlab.data.build import DataBundle
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.hooks import EpochHook, HookContext, Values
from siamlab.diagnostics.probe import EvalFeatures, ProbeCache, fixed_subset
from siamlab.diagnostics.registry import resolve_hook
from siamlab.models.siamese import SiameseNet
from siamlab.reporting.assemble import PROBE_BATCH
from siamlab.train.views import EpochView

EMBEDDING_HOOKS = ("knn", "eval_std", "centred", "spectrum")
BRANCH_PART = {"z": "projector", "p": "predictor"}  # h: the backbone, always there


@dataclass(frozen=True)
class Measurement:
    """What one checkpoint gave.

    Attributes:
        epoch: its epoch.
        values: variable name -> value, as a run records them at an epoch.
    """

    epoch: int
    values: Values


def probe_sets(data: DataBundle, diag: DiagnosticsConfig) -> dict[str, Dataset]:
    """The probe sets of a run (as :func:`siamlab.reporting.assemble.build_monitor`)."""
    return {
        "bank": fixed_subset(data.train_eval, diag.bank_size),
        "test": data.test_eval,
        "probe": fixed_subset(data.train_eval, diag.probe_size),
    }


def embedding_hooks(diag: DiagnosticsConfig, num_classes: int) -> list[EpochHook]:
    """The hooks of :data:`EMBEDDING_HOOKS`; kNN only with two classes or more."""
    ctx = HookContext(diag, 1, num_classes, False, True)
    names = [n for n in EMBEDDING_HOOKS if n != "knn" or num_classes >= 2]
    hooks = [resolve_hook(name).build(ctx) for name in names]
    return [h for h in hooks if isinstance(h, EpochHook)]


def measured_branches(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The outputs a checkpoint with ``parts`` gives: h, and z / p with their heads."""
    return ("h", *(b for b, part in BRANCH_PART.items() if part in parts))


def _kept(name: str, branches: tuple[str, ...]) -> bool:
    head = name.split("_", 1)[0]
    return head not in ("z", "p") or head in branches


@torch.no_grad()
def measure(
    model: SiameseNet,
    device: torch.device,
    sets: dict[str, Dataset],
    hooks: list[EpochHook],
    epoch: int,
    parts: tuple[str, ...],
) -> Measurement:
    """Run ``hooks`` on ``model``'s eval-mode embeddings of ``sets`` at ``epoch``.

    Args:
        model: the loaded network (left unchanged: eval-mode passes, modes restored).
        device: where it runs.
        sets: :func:`probe_sets`.
        hooks: :func:`embedding_hooks`.
        epoch: the checkpoint's epoch (the values' index).
        parts: what the checkpoint held (see :func:`measured_branches`).
    """
    probes = ProbeCache(EvalFeatures(model, device), sets, PROBE_BATCH)
    view = EpochView(epoch=epoch, step=0, seconds=0.0, images=0, is_last=True)
    values: Values = {}
    for hook in hooks:
        values.update(hook.on_epoch(view, probes))
    branches = measured_branches(parts)
    return Measurement(epoch, {k: v for k, v in values.items() if _kept(k, branches)})
