"""``siamlab diagnose`` as a function: read checkpoints, measure them, judge, write, draw.

::

    from siamlab.diagnose import diagnose
    out = diagnose("results/stopgrad/no_stop_grad/seed0")          # a run on its own data
    out = diagnose("checkpoint_0099.pth.tar", data="my_images/")    # any checkpoint, any images
    out.dataset["z_std_eval"], out.dataset.attrs["verdict"]

The config is the run's (a siamlab checkpoint carries it) or a profile's (other formats:
``--profile``, default ``cifar10`` for a ResNet with the 3x3 CIFAR stem, else ``imagenet``);
``data`` replaces its dataset (:mod:`siamlab.diagnose.data`), ``sets`` are ``--set``
overrides on top. Diagnostics parameters (probe size, kNN k, verdict thresholds) come from
its ``diagnostics`` section, so a run's checkpoint is measured as the run measured it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from siamlab.config.overrides import apply_sets, deep_merge
from siamlab.config.profiles import get_profile
from siamlab.config.schema import RunConfig
from siamlab.config.validation import validate_config
from siamlab.data.build import DataBundle, build_datasets, resolved_augment
from siamlab.data.fingerprint import other_images_note
from siamlab.diagnose.checkpoint_files import Epoch, check_epochs, epoch_of, list_checkpoints
from siamlab.diagnose.data import data_overrides
from siamlab.diagnose.figures import write_figures
from siamlab.diagnose.measure import (
    Measurement,
    embedding_hooks,
    measure,
    measured_branches,
    probe_sets,
)
from siamlab.diagnose.results import Provenance, build_dataset, write_diagnostics
from siamlab.errors import DataError, ResultsError
from siamlab.evaluation.checkpoints import LoadedCheckpoint, load_checkpoint_any
from siamlab.models.siamese import SiameseNet
from siamlab.results.store import METRICS_FILE, open_run, recorded_attr
from siamlab.train.device import select_device, set_threads


@dataclass
class Diagnosis:
    """The outcome of :func:`diagnose`.

    Attributes:
        dataset: the measurements in the results schema (``diagnostics.nc``).
        path: where ``diagnostics.nc`` was written.
        figures: the figures written.
        notes: what was left out, and why.
        run_verdict: the training run's own verdict (from its ``metrics.nc``), if any.
    """

    dataset: xr.Dataset
    path: Path
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_verdict: str | None = None


def _cifar_stem(model: nn.Module) -> bool:
    conv1 = getattr(getattr(getattr(model, "backbone", None), "body", None), "conv1", None)
    return isinstance(conv1, nn.Conv2d) and conv1.kernel_size == (3, 3)


def _config(
    loaded: LoadedCheckpoint,
    data: str | None,
    profile: str | None,
    sets: list[str],
    image_size: int | None,
) -> RunConfig:
    if loaded.config is not None:
        base = loaded.config.model_dump(mode="json")
    else:
        if data is None and not any(s.startswith("data.") for s in sets):
            raise DataError(
                f"{loaded.path} ({loaded.format} format) carries no config, so say which "
                "images to diagnose it on: --data digits | cifar10 | PATH (a folder of your "
                "images, an ImageNet-layout folder or an .npz data set)"
            )
        name = profile or ("cifar10" if _cifar_stem(loaded.model) else "imagenet")
        base = deep_merge(get_profile(name), {})
    base["data"] = data_overrides(base.get("data", {}), data, loaded.config is not None)
    if image_size is not None:
        base["data"]["image_size"] = image_size
    return validate_config(apply_sets(base, sets), where=f"diagnose config of {loaded.path}")


def _describe_data(cfg: RunConfig, bundle: DataBundle, sets: dict) -> str:
    d = cfg.data.dataset
    name = f"{d.kind}:{d.name}" if hasattr(d, "name") else d.kind
    root = getattr(d, "root", None)
    aug = resolved_augment(cfg.data)
    labels = f"{bundle.num_classes} classes" if bundle.num_classes >= 2 else "no labels (no kNN)"
    text = (
        f"{name}{f' {root}' if root else ''}, {cfg.data.image_size}px, {labels}, mean "
        f"{tuple(round(m, 3) for m in aug.mean or ())}; test split {len(sets['test'])} "
        f"(std, centred), probe set {len(sets['probe'])} of train (spectra, ranks)"
    )
    return text + (f", kNN bank {len(sets['bank'])}" if bundle.num_classes >= 2 else "")


def _drop_random_heads(loaded: LoadedCheckpoint) -> None:
    """Replace the heads the file did not hold (random init) by identities: not measured."""
    for head in ("projector", "predictor"):
        if head not in loaded.parts:
            setattr(loaded.model, head, nn.Identity())


def _z_dim(model: SiameseNet) -> int:
    """The width d of z: the projector's last Linear's output features."""
    linears = [m for m in model.projector.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features)


def default_output(target: Path, files: list[Path]) -> Path:
    """``<run or folder>/diagnose``; ``<folder>/diagnose-<name>`` for one checkpoint file."""
    if target.is_dir():
        return target / "diagnose"
    stem = files[0].name.split(".")[0]
    return files[0].parent / f"diagnose-{stem}"


def _own_verdict(loaded: LoadedCheckpoint) -> str | None:
    if loaded.run_dir is None or not (loaded.run_dir / METRICS_FILE).is_file():
        return None
    attrs = open_run(loaded.run_dir).attrs
    if not attrs.get("verdict"):
        return None
    return f"{attrs['verdict']} (since epoch {attrs.get('verdict_onset_epoch', '?')})"


def diagnose(
    target: str | Path,
    data: str | None = None,
    profile: str | None = None,
    sets: list[str] | None = None,
    device: str | None = None,
    output: str | Path | None = None,
    image_size: int | None = None,
    figures: bool = True,
    progress: bool = False,
) -> Diagnosis:
    """Measure every checkpoint of ``target`` and write ``diagnostics.nc`` and the figures.

    Args:
        target: a checkpoint file, a siamlab run folder, or a folder of one run's checkpoints.
        data: the images (:func:`siamlab.diagnose.data.dataset_of`); default the run's.
        profile: base config for checkpoints that carry none.
        sets: ``KEY.PATH=VALUE`` overrides (``data.*``, ``diagnostics.*``, ``train.device``).
        device: ``auto``, ``cpu`` or ``cuda``; default the config's ``train.device``.
        output: the folder of ``diagnostics.nc`` and ``figures/`` (:func:`default_output`).
        image_size: side of the images fed to the network (``data.image_size``).
        figures: draw the figures.
        progress: a progress bar over the checkpoints.

    Raises:
        SiamlabError: an unreadable or unknown checkpoint, unreadable or missing images, a
            folder whose checkpoints have no epochs, or an unwritable output folder.
    """
    target = Path(target)
    files = list_checkpoints(target)
    first = load_checkpoint_any(files[0])
    cfg = _config(first, data, profile, sets or [], image_size)
    set_threads(cfg.train.threads)
    dev = select_device(device or cfg.train.device)
    bundle = build_datasets(cfg.data, seed=0)
    probes = probe_sets(bundle, cfg.diagnostics)
    hooks = embedding_hooks(cfg.diagnostics, bundle.num_classes)
    measurements: list[Measurement] = []
    epochs: dict[Path, Epoch] = {}
    formats: set[str] = set()
    for path in tqdm(files, desc="checkpoints", disable=not progress, leave=False):
        loaded = first if path == files[0] else load_checkpoint_any(path)
        if loaded.parts != first.parts:
            raise ResultsError(
                f"{path} holds {'+'.join(loaded.parts)} but {files[0]} holds "
                f"{'+'.join(first.parts)}: a folder must hold the checkpoints of one run"
            )
        epochs[path] = epoch_of(path, loaded.epoch)
        check_epochs(epochs)
        formats.add(loaded.format)
        _drop_random_heads(loaded)
        loaded.model.to(dev)
        measurements.append(
            measure(loaded.model, dev, probes, hooks, epochs[path].value, loaded.parts)
        )
        del loaded
    branches = measured_branches(first.parts)
    dim = _z_dim(first.model) if "z" in branches else int(first.model.backbone.feature_dim)
    prov = Provenance(
        source=str(target),
        files={e.value: str(p) for p, e in epochs.items()},
        formats="+".join(sorted(formats)),
        epoch_from="+".join(sorted({e.source for e in epochs.values()})),
        branches=branches,
        dim=dim,
        data=_describe_data(cfg, bundle, probes),
        data_fingerprint=bundle.fingerprint,
    )
    ds = build_dataset(measurements, cfg, prov)
    folder = Path(output) if output is not None else default_output(target, files)
    try:
        path = write_diagnostics(folder, ds)
        drawn, skipped = write_figures(ds, folder) if figures else ([], [])
    except OSError as exc:
        raise ResultsError(
            f"cannot write to {folder}: {exc.strerror or exc}; pass --output DIR"
        ) from exc
    notes = [f"figure {s}" for s in skipped]
    trained = recorded_attr(first.run_dir, "data_fingerprint")
    other = other_images_note(trained, bundle.fingerprint, "measured")
    if other:
        notes.insert(0, f"{other}{' as --data asks' if data else ''}")
    return Diagnosis(ds, path, drawn, notes, _own_verdict(first))
