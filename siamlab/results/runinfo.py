"""Loading studies and the facts about their runs that compare and plots report.

Which metrics exist, which runs exist, which are still running, whether the seeds of
a variant share one config and the 1/sqrt(d) reference (each run's verdict:
:mod:`siamlab.results.verdicts`).
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from siamlab.errors import ResultsError
from siamlab.results.runstate import STOPPED_COLLAPSED
from siamlab.results.store import RUN_ATTRS, open_study, run_dirs

TIME_DIMS = ("step", "epoch")
FINISHED = frozenset({"finished", STOPPED_COLLAPSED})  # runs that ended as planned


def load_studies(paths: Sequence[str | Path]) -> dict[str, xr.Dataset]:
    """Open result folders: a study folder, or a root holding several study folders.

    Returns:
        study name -> its Dataset (attr ``results_dir``: the folder), in the order given.

    Raises:
        ResultsError: a path holds no runs (the message says what it does hold).
    """
    studies: dict[str, xr.Dataset] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ResultsError(f"{path} is not a folder; give a study folder like results/stopgrad")
        found = [path] if run_dirs(path) else [p for p in sorted(path.iterdir()) if run_dirs(p)]
        if not found:
            raise ResultsError(
                f"no results under {path}: expected <variant>/seed<k>/metrics.nc in it "
                "(a study folder) or in its subfolders (a results root)"
            )
        for study_dir in found:
            ds = open_study(study_dir)
            ds.attrs["results_dir"] = str(study_dir)
            name = str(ds.attrs.get("study", study_dir.name))
            if name in studies:
                name = str(study_dir)
            studies[name] = ds
    return studies


def as_study(ds: xr.Dataset) -> xr.Dataset:
    """A study Dataset as is; one run's Dataset (:func:`open_run`) as a one-run study."""
    if "variant" in ds.dims:
        return ds
    run = ds.expand_dims(
        variant=[str(ds.attrs.get("variant", "run"))], seed=[int(ds.attrs.get("seed", 0))]
    )
    for key in ("status", "config"):
        run[key] = xr.DataArray(
            [[str(ds.attrs.get(key, "finished" if key == "status" else ""))]],
            dims=("variant", "seed"),
        )
    return run


def merge_studies(studies: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """One Dataset from several studies, variants renamed ``<study>/<variant>``.

    A single study is returned unchanged. Runs of different lengths are padded with NaN.
    """
    if len(studies) == 1:
        return next(iter(studies.values()))
    renamed = [
        ds.assign_coords(variant=[f"{name}/{v}" for v in ds["variant"].values])
        for name, ds in studies.items()
    ]
    merged = xr.concat(renamed, dim="variant", join="outer", combine_attrs="drop_conflicts")
    merged.attrs["study"] = "+".join(studies)
    return merged


def scalar_metrics(ds: xr.Dataset) -> list[str]:
    """Numeric variables with one value per run, or per run and step or epoch.

    These are what compare can reduce: series over ``step``/``epoch`` and per-run
    numbers such as ``eval_linear_top1`` (not the run's provenance, e.g. its verdict's
    onset epoch: :data:`~siamlab.results.store.RUN_ATTRS`).
    """
    provenance = set(RUN_ATTRS.values())
    return [
        str(name)
        for name, da in ds.data_vars.items()
        if np.issubdtype(da.dtype, np.number)
        and name not in provenance
        and {"variant", "seed"} <= set(da.dims)
        and set(da.dims) - {"variant", "seed"} <= {"step"} | {"epoch"}
        and len(set(da.dims) - {"variant", "seed"}) <= 1
    ]


def check_metrics(ds: xr.Dataset, names: Sequence[str], scalar: bool = True) -> None:
    """Raise a clear error for requested variables the results do not hold.

    Raises:
        ResultsError: naming the missing variables and listing the available ones.
    """
    available = scalar_metrics(ds) if scalar else [str(n) for n in ds.data_vars]
    missing = [n for n in names if n not in available]
    if missing:
        what = "scalar metrics (per run, or over step or epoch)" if scalar else "variables"
        hint = "".join(
            f" ({n} has dims {ds[n].dims}: not one value per run, step or epoch)"
            for n in missing
            if n in ds.data_vars
        )
        raise ResultsError(
            f"not in these results: {', '.join(missing)}{hint}. "
            f"Available {what}: {', '.join(available) or '(none)'}"
        )


def run_exists(ds: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Bool over (variant, seed): the run has results (a non-empty ``status``)."""
    status = ds["status"]
    ok = np.vectorize(lambda s: isinstance(s, str) and bool(s), otypes=[bool])(status.values)
    return xr.DataArray(ok, dims=status.dims, coords=status.coords)


def _config(text: object) -> dict[str, Any]:
    try:
        parsed = yaml.safe_load(str(text)) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_conflicts(ds: xr.Dataset) -> list[str]:
    """One message per variant whose seeds ran with different configs (differing keys)."""
    exists = run_exists(ds)
    out = []
    for variant in ds["variant"].values:
        runs = {
            int(seed): _flatten(_config(ds["config"].sel(variant=variant, seed=seed).item()))
            for seed in ds["seed"].values
            if exists.sel(variant=variant, seed=seed)
        }
        keys = sorted({k for cfg in runs.values() for k in cfg})
        diff = [k for k in keys if len({repr(cfg.get(k)) for cfg in runs.values()}) > 1]
        if diff:
            shown = "; ".join(
                f"{k}: " + ", ".join(f"seed{s}={cfg.get(k)!r}" for s, cfg in runs.items())
                for k in diff[:3]
            )
            more = f" (+{len(diff) - 3} more keys)" if len(diff) > 3 else ""
            out.append(
                f"variant {variant} mixes configs across seeds, so its mean ± std pools "
                f"different settings: {shown}{more}"
            )
    return out


def threshold_notes(ds: xr.Dataset) -> list[str]:
    """A message when runs were judged with verdict thresholds other than today's defaults.

    Each run's config records the thresholds its verdict was judged with; after a
    recalibration (or a study's own choice) a verdict can differ from what today's
    defaults say, which ``siamlab rejudge`` shows without training.
    """
    from siamlab.diagnostics.config import VerdictConfig  # torch-free

    today = VerdictConfig().model_dump()
    exists = run_exists(ds)
    differ: dict[str, set[str]] = {}
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            if not exists.sel(variant=variant, seed=seed):
                continue
            config = _config(ds["config"].sel(variant=variant, seed=seed).item())
            given = (config.get("diagnostics") or {}).get("verdict") or {}
            for key, value in given.items():
                if key in today and value != today[key]:
                    differ.setdefault(key, set()).add(repr(value))
    if not differ:
        return []
    shown = ", ".join(f"{k} {'/'.join(sorted(v))} (today {today[k]!r})" for k, v in differ.items())
    return [
        f"verdicts judged with thresholds other than today's defaults: {shown}; "
        "siamlab rejudge STUDY_DIR judges them again without training"
    ]


def last_epoch(ds: xr.Dataset) -> xr.DataArray:
    """Over (variant, seed): the last epoch with any recorded value (0 when none)."""
    per_var = [
        ds[n].notnull().any([d for d in ds[n].dims if d not in ("variant", "seed", "epoch")])
        for n in ds.data_vars
        if "epoch" in ds[n].dims and np.issubdtype(ds[n].dtype, np.number)
    ]
    if not per_var or "epoch" not in ds.coords:
        return xr.zeros_like(ds["status"], dtype=int)
    any_value = xr.concat(per_var, "var").any("var")
    return (any_value * ds["epoch"]).max("epoch").astype(int)


def run_notes(ds: xr.Dataset) -> list[str]:
    """Messages on partial, diverged, failed or missing runs and on mixed configs."""
    exists, done = run_exists(ds), last_epoch(ds)
    notes = []
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            name = f"{variant}/seed{seed}"
            if not exists.sel(variant=variant, seed=seed):
                if exists.sel(variant=variant).any():
                    notes.append(f"{name} has no results: the variant's numbers use fewer seeds")
                continue
            status = str(ds["status"].sel(variant=variant, seed=seed).item())
            if status in FINISHED:
                continue
            cfg = _config(ds["config"].sel(variant=variant, seed=seed).item())
            planned = cfg.get("train", {}).get("epochs", "?")
            epoch = int(done.sel(variant=variant, seed=seed))
            progress = f"at epoch {epoch} of {planned}"
            what = {"running": "is still running (or was stopped)", "diverged": "diverged"}
            notes.append(f"{name} {what.get(status, status)} {progress}; 'final' = its latest")
    return notes + config_conflicts(ds) + precision_conflicts(ds) + threshold_notes(ds)


def precision_conflicts(ds: xr.Dataset) -> list[str]:
    """A message when the runs trained at different precisions (``precision`` attr).

    A config's ``train.precision: auto`` is bf16 on one machine and fp32 on another, so
    configs that agree can still have run differently; files without the attr say nothing.
    """
    if "precision" not in ds.data_vars:
        return []
    exists = run_exists(ds)
    by_precision: dict[str, list[str]] = {}
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            ran = str(ds["precision"].sel(variant=variant, seed=seed).item())
            if exists.sel(variant=variant, seed=seed) and ran:
                by_precision.setdefault(ran, []).append(f"{variant}/seed{seed}")
    if len(by_precision) < 2:
        return []
    parts = "; ".join(f"{p}: {', '.join(runs)}" for p, runs in sorted(by_precision.items()))
    return [f"the runs trained at different precisions ({parts}): differences mix both"]


def std_reference(ds: xr.Dataset) -> float | None:
    """1/sqrt(d) from the attrs, the configs (when every run has one d) or the channels."""
    if "std_reference" in ds.attrs:
        return float(ds.attrs["std_reference"])
    exists = run_exists(ds).values.ravel()
    dims = {
        _config(c).get("model", {}).get("dim")
        for c, ok in zip(ds["config"].values.ravel(), exists, strict=True)
        if ok
    }
    if len(dims) == 1 and isinstance(d := dims.pop(), int):
        return 1 / math.sqrt(d)
    if not dims and "channel" in ds.dims:
        return 1 / math.sqrt(ds.sizes["channel"])
    return None


def run_std_references(ds: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """1/sqrt(d) of every run, shape (variant, seed): each run's own ``model.dim``.

    A study whose variants differ in d (``dimension.yaml``) has no single reference;
    runs without a config fall back to :func:`std_reference` (NaN when unknown).
    """
    shared = std_reference(ds) if isinstance(ds, xr.Dataset) else None
    configs = ds["config"]  # (variant, seed) YAML text
    values = np.full(configs.shape, math.nan if shared is None else shared)
    for index, text in np.ndenumerate(configs.values):
        dim = _config(text).get("model", {}).get("dim") if text else None
        if isinstance(dim, int) and dim > 0:
            values[index] = 1 / math.sqrt(dim)
    return xr.DataArray(values, dims=configs.dims, coords=configs.coords)
