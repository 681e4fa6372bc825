"""Reading and writing result datasets: one run's ``metrics.nc``, or a whole study."""

from pathlib import Path

import xarray as xr

from siamlab.atomic import atomic_write
from siamlab.errors import ResultsError

METRICS_FILE = "metrics.nc"


def write_run(run_dir: str | Path, ds: xr.Dataset) -> Path:
    """Write ``ds`` to ``run_dir/metrics.nc`` atomically (netCDF4 via h5netcdf)."""
    path = Path(run_dir) / METRICS_FILE
    atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    return path


def open_run(path: str | Path) -> xr.Dataset:
    """Load one run's results into memory (the file is closed afterwards).

    Args:
        path: a run folder or its ``metrics.nc``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise ResultsError(f"no results at {path}: has this run started?")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path} is not a readable results file: {exc}") from exc


def run_dirs(study_dir: str | Path) -> list[Path]:
    """Every ``<variant>/seed<k>`` folder of a study that holds results."""
    return sorted(p.parent for p in Path(study_dir).glob(f"*/seed*/{METRICS_FILE}"))


def open_study(study_dir: str | Path) -> xr.Dataset:
    """All runs of a study in one Dataset with extra dims ``variant`` and ``seed``.

    Runs of different lengths (e.g. one still running) are padded with NaN. Per-run
    provenance attrs become variables over (variant, seed): ``status`` and ``config``.

    Raises:
        ResultsError: when the folder holds no results.
    """
    dirs = run_dirs(study_dir)
    if not dirs:
        raise ResultsError(f"no runs with {METRICS_FILE} under {study_dir}")
    by_variant: dict[str, list[xr.Dataset]] = {}
    for d in dirs:
        ds = open_run(d)
        seed = int(ds.attrs.get("seed", d.name.removeprefix("seed")))
        run_attrs = {k: ds.attrs.get(k, "") for k in ("status", "config")}
        ds = ds.assign_coords(seed=seed).expand_dims("seed")
        for key, value in run_attrs.items():
            ds[key] = xr.DataArray([str(value)], dims=["seed"])
        by_variant.setdefault(d.parent.name, []).append(ds)
    per_variant = [
        xr.concat(runs, dim="seed", join="outer", combine_attrs="drop_conflicts").expand_dims(
            variant=[name]
        )
        for name, runs in by_variant.items()
    ]
    study = xr.concat(per_variant, dim="variant", join="outer", combine_attrs="drop_conflicts")
    study["variant"].attrs = {"long_name": "study variant", "units": "1"}
    study["seed"].attrs = {"long_name": "random seed", "units": "1"}
    study.attrs["study"] = Path(study_dir).name
    return study
