"""Reading and writing result datasets: one run's ``metrics.nc``, or a whole study."""

import importlib.util
import math
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Final

import xarray as xr

from siamlab.atomic import atomic_write
from siamlab.errors import ResultsError

METRICS_FILE = "metrics.nc"
# netCDF4 (HDF5) files through the netCDF C library (the netCDF4 package): 5x faster to
# write and 8x faster to read than h5netcdf on a run's 60-odd variables (README,
# "Results schema"). The same format either way, so each reads the other's files;
# h5netcdf where netCDF4 is not installed (benchmarks/gpu_check.py's GPU image).
NETCDF_ENGINE: Final = "netcdf4" if importlib.util.find_spec("netCDF4") else "h5netcdf"
# per-run attrs that open_study keeps as variables over (variant, seed): attr -> variable
# (the run verdict's variables are renamed: ``verdict`` is also the per-epoch state)
RUN_ATTRS = {
    "status": "status",
    "config": "config",
    "precision": "precision",
    "channels_last": "channels_last",
    "device": "device",
    "threads": "threads",
    "threads_history": "threads_history",
    "data_fingerprint": "data_fingerprint",
    "verdict": "final_verdict",
    "verdict_onset_epoch": "final_verdict_onset_epoch",
    "verdict_evidence": "final_verdict_evidence",
    "verdict_provisional": "final_verdict_provisional",
}
NUMERIC_RUN_ATTRS = frozenset(
    {"verdict_onset_epoch", "verdict_provisional", "threads", "channels_last"}
)


def write_run(run_dir: str | Path, ds: xr.Dataset) -> Path:
    """Write ``ds`` to ``run_dir/metrics.nc`` atomically (netCDF4)."""
    path = Path(run_dir) / METRICS_FILE
    atomic_write(path, lambda tmp: to_netcdf_file(ds, tmp))
    return path


def to_netcdf_file(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` to ``path``, a failed write raised as the ``OSError`` atomic_write reports.

    atomic_write says the previous file is intact: free disk space and re-run. The netCDF
    C library reports a write that fails once the file exists (a full disk among them) as
    ``RuntimeError("NetCDF: HDF error")``, where h5py raised ``OSError``.
    """
    try:
        ds.to_netcdf(path, engine=NETCDF_ENGINE)
    except RuntimeError as exc:
        raise OSError(f"netCDF: {exc}") from exc


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
        with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
            return ds.load()
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: the netCDF C library's
        raise ResultsError(
            f"{path} is not a readable results file: {exc}. Re-running its study rewrites it "
            "from the run's last checkpoint; without one, delete the run's folder to train it again"
        ) from exc


def recorded_attr(run_dir: Path | None, key: str) -> str:
    """``key`` of a run's ``metrics.nc`` attrs; "" where there is no run or no results."""
    if run_dir is None or not (run_dir / METRICS_FILE).is_file():
        return ""
    return str(open_run(run_dir).attrs.get(key, ""))


def run_dirs(study_dir: str | Path) -> list[Path]:
    """Every ``<variant>/seed<k>`` folder of a study that holds results."""
    return sorted(p.parent for p in Path(study_dir).glob(f"*/seed*/{METRICS_FILE}"))


def open_study(study_dir: str | Path) -> xr.Dataset:
    """All runs of a study in one Dataset with extra dims ``variant`` and ``seed``.

    Runs of different lengths (e.g. one still running) are padded with NaN. Per-run
    attrs become variables over (variant, seed) (:data:`RUN_ATTRS`): ``status``,
    ``config``, ``precision`` (what the training forward ran), ``device`` and ``threads``
    (where it trained; "" and NaN in older files), ``threads_history`` (a CPU run resumed
    on another count: "2 from step 1, 1 from step 121"; "" otherwise), ``data_fingerprint``
    (which images it trained on; "" in older files) and the run verdict as
    ``final_verdict``, ``final_verdict_onset_epoch``, ``final_verdict_evidence``,
    ``final_verdict_provisional`` ("" or NaN when a run's file has none).

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
        run_attrs = {name: _run_attr(ds.attrs, key) for key, name in RUN_ATTRS.items()}
        ds = ds.assign_coords(seed=seed).expand_dims("seed")
        for name, value in run_attrs.items():
            ds[name] = xr.DataArray([value], dims=["seed"])
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


def _run_attr(attrs: Mapping[Hashable, Any], key: str) -> str | float:
    """A run attr as a string, or as a float (NaN when absent) for the numeric ones."""
    value = attrs.get(key)
    if key in NUMERIC_RUN_ATTRS:
        try:
            return float(value)  # type: ignore[arg-type]  # a bad attr is NaN below
        except (TypeError, ValueError):
            return math.nan
    return "" if value is None else str(value)
