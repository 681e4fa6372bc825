"""Evaluate one checkpoint end to end: load it, build its data, measure, record.

The Python API behind ``siamlab eval``::

    target = prepare("results/stopgrad/stop_grad/seed0")        # a run folder or any checkpoint
    out = run_linear(target, ProbeRecipe(path="fast"))            # -> EvalOutcome
    out = run_knn(target, KnnRecipe(k=200, temperature=0.1))

The data and device come from the run's config (``config`` stored in a siamlab checkpoint);
for a checkpoint of another format from a profile (default ``imagenet``); ``sets`` are
``--set``-style overrides on top (e.g. ``data.root=...``). Results are written into the
run's ``metrics.nc`` only when the run is finished (see :mod:`siamlab.evaluation.writeback`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from siamlab.config.overrides import apply_sets, deep_merge
from siamlab.config.profiles import get_profile
from siamlab.config.schema import RunConfig
from siamlab.config.validation import validate_config
from siamlab.data.build import DataBundle, build_datasets, resolved_augment
from siamlab.data.dataset_config import NpzConfig
from siamlab.data.fingerprint import other_images_note
from siamlab.errors import ResultsError
from siamlab.evaluation.augmented_probe import (
    KeyedAugmented,
    probe_augmented,
    probe_train_transform,
)
from siamlab.evaluation.checkpoints import LoadedCheckpoint, load_checkpoint_any
from siamlab.evaluation.knn_eval import KnnRecipe, knn_evaluate
from siamlab.evaluation.linear_probe import ProbeRecipe, probe_fast
from siamlab.evaluation.writeback import write_eval
from siamlab.results.store import METRICS_FILE, open_run, recorded_attr
from siamlab.train.device import select_device, set_threads

FOREIGN_PROFILE = "imagenet"
LARS_MIN_STEPS = 5000  # below this, warn that the paper's LARS probe may be under-trained


@dataclass
class EvalTarget:
    """A loaded checkpoint with the config, data and device to evaluate it on.

    Attributes:
        checkpoint: the loaded model and where it came from.
        config: the resolved config (data, device, kNN defaults).
        data: the train and test splits under the eval transform.
        device: where the backbone runs.
        write_dir: the folder whose ``metrics.nc`` receives the results; None: not written.
        skip_reason: why results will not be written, if they will not.
    """

    checkpoint: LoadedCheckpoint
    config: RunConfig
    data: DataBundle
    device: torch.device
    write_dir: Path | None
    skip_reason: str = ""


@dataclass
class EvalOutcome:
    """The values measured (``eval_*`` name -> fraction), their attrs and where they went."""

    values: dict[str, float]
    attrs: dict[str, str]
    written: Path | None = None
    notes: list[str] = field(default_factory=list)


def _config(loaded: LoadedCheckpoint, profile: str | None, sets: list[str]) -> RunConfig:
    if loaded.config is not None:
        base = loaded.config.model_dump(mode="json")
    else:
        base = deep_merge(get_profile(profile or FOREIGN_PROFILE), {})
    return validate_config(apply_sets(base, sets), where=f"evaluation config of {loaded.path}")


def prepare(
    checkpoint: str | Path,
    profile: str | None = None,
    sets: list[str] | None = None,
    device: str | None = None,
    output: str | Path | None = None,
) -> EvalTarget:
    """Load a checkpoint and build what its evaluation needs.

    Args:
        checkpoint: a checkpoint file of any supported format, or a siamlab run folder.
        profile: base config for checkpoints that carry none (default ``imagenet``).
        sets: ``KEY.PATH=VALUE`` overrides of the config (data, train.device, ...).
        device: ``auto``, ``cpu`` or ``cuda``; default the config's ``train.device``.
        output: folder whose ``metrics.nc`` receives the results when the checkpoint
            belongs to no run (created if needed); ignored for a run's own checkpoint.

    Raises:
        SiamlabError: an unreadable checkpoint, a bad override or missing data.
    """
    loaded = load_checkpoint_any(checkpoint)
    cfg = _config(loaded, profile, sets or [])
    set_threads(cfg.train.threads)
    dev = select_device(device or cfg.train.device)
    loaded.model.to(dev)
    write_dir, reason = loaded.run_dir, ""
    if write_dir is not None:
        status = _run_status(write_dir) or "missing"
        if status != "finished":
            reason = f"run status is {status!r}: training rewrites metrics.nc, finish it first"
            write_dir = None
    elif output is not None:
        write_dir, reason = _output_folder(Path(output))
    else:
        reason = "the checkpoint belongs to no run; pass --output DIR to record results"
    data = build_datasets(cfg.data, seed=0)
    return EvalTarget(loaded, cfg, data, dev, write_dir, reason)


def _output_folder(folder: Path) -> tuple[Path | None, str]:
    """``--output``, checked before any work: (the folder, "") or (None, why not).

    Raises:
        ResultsError: it is a file, or cannot be created or written.
    """
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"--output {folder} is a file; pass a folder for metrics.nc")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot create --output {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK):
        raise ResultsError(f"cannot write to --output {folder}; pass another folder")
    status = _run_status(folder)
    if status is not None and status not in ("finished", "evaluated"):
        return None, f"{folder} holds a run whose status is {status!r}: pass another --output"
    return folder, ""


def _run_status(folder: Path) -> str | None:
    """The status of ``folder``'s ``metrics.nc`` ("unknown" without one); None without the file."""
    if not (folder / METRICS_FILE).is_file():
        return None
    return str(open_run(folder).attrs.get("status", "unknown"))


def _source_text(target: EvalTarget) -> str:
    d = target.config.data
    src = d.dataset.kind + (f":{d.dataset.name}" if isinstance(d.dataset, NpzConfig) else "")
    root = getattr(d.dataset, "root", None)
    return f"{src} at {d.image_size}px (root {root}; images {target.data.fingerprint})"


def _split_text(target: EvalTarget, split: str) -> str:
    dataset = target.data.train_eval if split == "train" else target.data.test_eval
    return f"{split} split ({len(dataset)} images)"


def _checkpoint_text(loaded: LoadedCheckpoint) -> str:
    when = "".join(
        f", {name} {value}"
        for name, value in (("epoch", loaded.epoch), ("step", loaded.step))
        if value is not None
    )
    return f"{loaded.path} ({loaded.format}{when}; loaded: {'+'.join(loaded.parts)})"


def _record(target: EvalTarget, out: EvalOutcome) -> EvalOutcome:
    trained = recorded_attr(target.checkpoint.run_dir, "data_fingerprint")
    note = other_images_note(trained, target.data.fingerprint, "evaluated")
    if note:
        out.notes.append(f"{note}; the data attr says which")
    if target.write_dir is None:
        out.notes.append(f"not recorded: {target.skip_reason}")
        return out
    new_attrs = {
        "study": "",
        "variant": "",
        "status": "evaluated",
        "source": str(target.checkpoint.path),
    }
    out.written = write_eval(target.write_dir, out.values, out.attrs, new_attrs)
    return out


def run_linear(
    target: EvalTarget,
    recipe: ProbeRecipe,
    batch_size: int = 256,
    progress: bool = True,
    state_dir: str | Path | None = None,
) -> EvalOutcome:
    """Linear probe on the backbone's pool5 features; records ``eval_linear_*``.

    Args:
        target: from :func:`prepare`.
        recipe: the probe's hyper-parameters and path.
        batch_size: images per forward pass when extracting features.
        progress: tqdm progress bars.
        state_dir: where the augmented path keeps its resumable state; default
            ``<run or output folder>/eval`` (else beside the checkpoint).
    """
    backbone, data, dev = target.checkpoint.model.backbone, target.data, target.device
    if recipe.path == "fast":
        splits = (data.train_eval, data.test_eval, data.num_classes)
        res = probe_fast(backbone, *splits, recipe, dev, batch_size, progress)
        train_what = "cached features of the eval transform (no augmentation)"
    else:
        aug = resolved_augment(target.config.data)
        size = target.config.data.image_size
        transform = probe_train_transform(size, aug.mean or (), aug.std or (), recipe.crop_scale)
        train = KeyedAugmented(data.train_eval.source, transform, recipe.seed)
        key = {
            "checkpoint": str(target.checkpoint.path.resolve()),
            "mtime_ns": target.checkpoint.path.stat().st_mtime_ns,
            "data": target.config.data.model_dump(mode="json"),
        }
        digest = hashlib.sha256(json.dumps([key, asdict(recipe)], sort_keys=True).encode())
        folder = Path(state_dir or target.write_dir or target.checkpoint.path.parent)
        state = folder / "eval" / f"linear_probe_{digest.hexdigest()[:12]}.pt"
        workers = target.config.data.num_workers
        res = probe_augmented(
            backbone,
            train,
            data.test_eval,
            data.num_classes,
            recipe,
            dev,
            state,
            key,
            workers,
            progress,
        )
        train_what = f"RandomResizedCrop(scale={recipe.crop_scale})+flip every epoch"
    attrs = {
        "recipe": recipe.describe(),
        "path": res.path,
        "data": f"{_source_text(target)}; train: {_split_text(target, 'train')}, {train_what}; "
        f"validation: {_split_text(target, 'test')}, eval transform (Resize+CenterCrop)",
        "checkpoint": _checkpoint_text(target.checkpoint),
    }
    values = {
        "eval_linear_top1": res.top1,
        "eval_linear_top5": res.top5,
        "eval_linear_train_top1": res.train_top1,
    }
    out = EvalOutcome(values, attrs)
    steps = math.ceil(len(data.train_eval) / recipe.batch_size) * recipe.epochs
    if recipe.optimizer == "lars" and steps < LARS_MIN_STEPS:
        out.notes.append(
            f"only {steps} probe steps: LARS moves the weights by ~lr x trust x |W| per step, so "
            "the paper's recipe (tuned for ImageNet's ~28k steps) is likely under-trained here; "
            "compare with e.g. --optimizer sgd --base-lr 0.1 --batch-size 256 --standardize"
        )
    return _record(target, out)


def run_knn(
    target: EvalTarget,
    recipe: KnnRecipe,
    batch_size: int = 256,
    progress: bool = True,
) -> EvalOutcome:
    """Weighted kNN on the backbone's features; records ``eval_knn_top1/top5``."""
    data = target.data
    splits: dict[str, Any] = {"train": data.train_eval, "test": data.test_eval}
    acc = knn_evaluate(
        target.checkpoint.model.backbone,
        splits,
        data.num_classes,
        recipe,
        target.device,
        batch_size,
        progress,
    )
    attrs = {
        "recipe": recipe.describe(),
        "path": "features",
        "data": f"{_source_text(target)}; bank: {_split_text(target, recipe.bank)}; queries: "
        f"{_split_text(target, recipe.queries)}; eval transform (Resize+CenterCrop)",
        "checkpoint": _checkpoint_text(target.checkpoint),
    }
    values = {"eval_knn_top1": acc["top1"], "eval_knn_top5": acc["top5"]}
    return _record(target, EvalOutcome(values, attrs))
