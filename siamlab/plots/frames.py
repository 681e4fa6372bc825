"""Study Datasets as long tables for seaborn: one row per (variant, seed, x) value."""

import math

import numpy as np
import pandas as pd
import xarray as xr

from siamlab.errors import ResultsError
from siamlab.plots.ranges import UNBOUNDED
from siamlab.results.intervals import BOOTSTRAP_FROM, mean_intervals
from siamlab.results.runinfo import FINISHED, last_epoch, run_exists

BOOTSTRAP_POINTS = 1_000  # a longer series (per-step loss) gets Student t bands: speed


def series_frame(ds: xr.Dataset, name: str, scale: float = 1.0) -> pd.DataFrame:
    """``name`` (over variant, seed and one more dim) as columns variant, seed, x, value.

    Missing runs and unrecorded points (NaN) are left out; ``x`` is the extra dim.
    """
    da = ds[name].where(run_exists(ds))
    (dim,) = [d for d in da.dims if d not in ("variant", "seed")]
    df = (da * scale).rename(name).to_dataframe().reset_index()
    df = df.rename(columns={dim: "x", name: "value"})[["variant", "seed", "x", "value"]]
    return df.dropna(subset=["value"]).astype({"value": float})


def band_frame(df: pd.DataFrame, bounds: tuple[float, float] = UNBOUNDED) -> pd.DataFrame:
    """Per variant and x: the mean over seeds and its 95% interval (``lo``, ``hi``, ``n``).

    ``df``: a :func:`series_frame`. The interval is the compare table's
    (:func:`~siamlab.results.intervals.mean_intervals`: Student t for 2-4 seeds,
    bootstrap-t from 5), except that a series of more than :data:`BOOTSTRAP_POINTS`
    points gets Student t throughout (a bootstrap per point would take seconds); NaN
    bounds where one seed has a value. ``bounds``: the values the quantity can take
    (:func:`~siamlab.plots.ranges.value_range`); ``lo`` and ``hi`` are clipped to them
    (a std's band never dips below 0), ``mean`` is not.
    """
    floor, ceiling = bounds
    parts = []
    for variant, runs in df.groupby("variant", sort=False):
        wide = runs.pivot(index="x", columns="seed", values="value").sort_index()  # (x, seed)
        long = len(wide) > BOOTSTRAP_POINTS
        iv = mean_intervals(
            wide.to_numpy(dtype=float), bootstrap_from=math.inf if long else BOOTSTRAP_FROM
        )
        parts.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "x": wide.index.to_numpy(),
                    "mean": [i.mean for i in iv],
                    "lo": np.clip([i.lo for i in iv], floor, ceiling),
                    "hi": np.clip([i.hi for i in iv], floor, ceiling),
                    "n": [i.n for i in iv],
                }
            )
        )
    columns = ["variant", "x", "mean", "lo", "hi", "n"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def at_epoch(ds: xr.Dataset, name: str, epoch: int | None) -> tuple[xr.DataArray, str]:
    """``name`` at one epoch per run, and a caption saying which.

    ``epoch=None`` takes each run's last epoch with a value (a running run's latest); at
    a given epoch the caption counts the runs that have a value there, where some lack it.

    Raises:
        ResultsError: ``epoch`` has no value in any run (the message lists those that do).
    """
    da = ds[name].where(run_exists(ds))
    has = da.notnull().any([d for d in da.dims if d not in ("variant", "seed", "epoch")])
    if epoch is not None:
        recorded = [int(e) for e in ds["epoch"].values if has.sel(epoch=e).any()]
        if epoch not in recorded:
            raise ResultsError(
                f"{name} has no values at epoch {epoch}; recorded epochs: "
                f"{_ranges(recorded) or '(none)'}"
            )
        runs, reached = int(run_exists(ds).sum()), int(has.sel(epoch=epoch).sum())
        some = f" ({reached} of {runs} runs have it)" if reached < runs else ""
        return da.sel(epoch=epoch), f"epoch {epoch}{some}"
    last = (has * ds["epoch"]).max("epoch")
    picked = da.sel(epoch=last.clip(min=int(ds["epoch"].min())))
    picked = picked.where(last > 0)
    finals = sorted({int(e) for e in last.values.ravel() if e > 0})
    caption = f"epoch {finals[0]}" if len(finals) == 1 else "last epoch"
    return picked.drop_vars("epoch", errors="ignore"), caption


def _ranges(values: list[int]) -> str:
    if len(values) > 6:
        return f"{values[0]}..{values[-1]} ({len(values)} epochs)"
    return ", ".join(map(str, values))


def profile_frame(da: xr.DataArray, floor: float | None = None) -> pd.DataFrame:
    """A (variant, seed, index) array sorted descending per run: variant, seed, x (1-based), value.

    Values below ``floor`` are raised to it (for log axes); runs without values are left out.
    """
    (dim,) = [d for d in da.dims if d not in ("variant", "seed")]
    values = -np.sort(-da.transpose("variant", "seed", dim).values, axis=-1)  # NaNs last
    rows = []
    for i, variant in enumerate(da["variant"].values):
        for j, seed in enumerate(da["seed"].values):
            v = values[i, j]
            v = v[~np.isnan(v)]
            if v.size == 0:
                continue
            if floor is not None:
                v = np.maximum(v, floor)
            rows.append(
                pd.DataFrame(
                    {"variant": variant, "seed": seed, "x": np.arange(1, v.size + 1), "value": v}
                )
            )
    if not rows:
        raise ResultsError(f"{da.name} has no values to plot")
    return pd.concat(rows, ignore_index=True)


def variant_labels(ds: xr.Dataset) -> dict[str, str]:
    """Variant -> legend label, marked ``(running)`` etc. when a run has not finished."""
    exists, out = run_exists(ds), {}
    for variant in ds["variant"].values:
        status = ds["status"].sel(variant=variant).values[exists.sel(variant=variant).values]
        other = sorted({str(s) for s in status} - {"finished"})
        out[str(variant)] = f"{variant} ({', '.join(other)})" if other else str(variant)
    return out


def steps_per_epoch(ds: xr.Dataset) -> int | None:
    """SGD steps per epoch, from the step and epoch counts of runs that ended or are running.

    Results are written at epoch ends, so the ratio is exact; None when runs disagree
    (different batch sizes or data), none has a whole epoch, or there is no step loss.
    """
    if "loss" not in ds or "epoch" not in ds.dims:
        return None
    steps = ds["loss"].notnull().sum("step")
    epochs = last_epoch(ds)
    ok = ds["status"].isin([*FINISHED, "running"]) & (epochs > 0)
    ratios = {float(r) for r in (steps / epochs.where(ok)).values.ravel() if np.isfinite(r)}
    if len(ratios) != 1 or not (ratio := ratios.pop()).is_integer():
        return None
    return int(ratio)
