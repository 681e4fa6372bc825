"""Loading studies and the facts about their runs that compare and plots report.

Which metrics exist, which runs exist, how far each got, its config and the 1/sqrt(d)
reference (the notes printed about the runs: :mod:`siamlab.results.run_notes`; each
run's verdict: :mod:`siamlab.results.verdicts`).
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


def run_config(text: object) -> dict[str, Any]:
    """A run's ``config`` attr (YAML) as a dict; {} when absent or unreadable."""
    try:
        parsed = yaml.safe_load(str(text)) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def std_reference(ds: xr.Dataset) -> float | None:
    """1/sqrt(d) from the attrs, the configs (when every run has one d) or the channels."""
    if "std_reference" in ds.attrs:
        return float(ds.attrs["std_reference"])
    exists = run_exists(ds).values.ravel()
    dims = {
        run_config(c).get("model", {}).get("dim")
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
        dim = run_config(text).get("model", {}).get("dim") if text else None
        if isinstance(dim, int) and dim > 0:
            values[index] = 1 / math.sqrt(dim)
    return xr.DataArray(values, dims=configs.dims, coords=configs.coords)
