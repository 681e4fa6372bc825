"""One value per run of a metric (its final or best); a metric over seeds (mean, 95% interval)."""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from siamlab.config.validation import validate_config
from siamlab.errors import ConfigError
from siamlab.results.intervals import Difference, mean_interval
from siamlab.results.runinfo import TIME_DIMS, run_config, run_std_references

Reduce = Literal["final", "best"]

SQRT_D = "*sqrt(d)"  # suffix: the variable times sqrt(d), e.g. z_std_eval*sqrt(d) (1 = spread)
EXCLUDES_ZERO = "*"  # marks a difference whose interval excludes 0


def lower_is_better(name: str) -> bool:
    """Whether the best of ``name`` is its minimum.

    The losses are: ``loss``, ``epoch_loss``, ``cosine_loss``, ``start_loss`` (every name
    ending in ``loss``).
    """
    return name.endswith("loss")


def std_references(ds: xr.Dataset, name: str) -> xr.DataArray:
    """1/sqrt(d) of every run for variable ``name``, (variant, seed).

    d is the width of the output it measures: ``model.dim`` for z and p, the backbone's
    C for ``h_*``.
    """
    if not name.startswith("h_"):
        return run_std_references(ds)
    configs = ds["config"]  # (variant, seed) YAML text
    values = np.full(configs.shape, math.nan)
    for index, text in np.ndenumerate(configs.values):
        try:
            width = validate_config(run_config(text)).model.backbone.feature_dim
        except ConfigError:  # no config, or one of an older schema: unknown
            continue
        values[index] = 1 / math.sqrt(width)
    return xr.DataArray(values, dims=configs.dims, coords=configs.coords)


def reduce_runs(ds: xr.Dataset, name: str, reduce: Reduce = "final") -> xr.DataArray:
    """One value per (variant, seed): the last recorded value, or the best over training.

    ``best`` is the minimum for losses and the maximum otherwise. NaN where a run has
    no value (missing run, metric not recorded yet). ``<name>*sqrt(d)`` is ``name``
    divided by each run's 1/sqrt(d) (its own d: a study may vary it; for h its
    backbone's width C, :func:`std_references`).
    """
    if name.endswith(SQRT_D):
        base = name.removesuffix(SQRT_D)
        return reduce_runs(ds, base, reduce) / std_references(ds, base)
    da = ds[name]
    if not set(da.dims) & set(TIME_DIMS):  # one number per run, e.g. eval_linear_top1
        return da
    (dim,) = [d for d in da.dims if d in TIME_DIMS]
    if reduce == "best":
        return da.min(dim) if lower_is_better(name) else da.max(dim)
    if reduce != "final":
        raise ValueError(f"reduce must be 'final' or 'best', not {reduce!r}")
    values = da.transpose(..., dim).values
    valid = ~np.isnan(values)
    last = values.shape[-1] - 1 - np.argmax(valid[..., ::-1], axis=-1)
    out = np.take_along_axis(values, last[..., None], axis=-1)[..., 0]
    out = np.where(valid.any(axis=-1), out, np.nan)
    return xr.DataArray(
        out, dims=[d for d in da.dims if d != dim], coords={d: ds[d] for d in da.dims if d != dim}
    )


def _decimals(value: float) -> int:
    """Decimals that show ``value`` to 3 significant digits (0 to 6)."""
    m = abs(value)
    return 3 if m == 0 or not math.isfinite(m) else min(6, max(0, 2 - math.floor(math.log10(m))))


@dataclass(frozen=True)
class Cell:
    """A metric over seeds: mean, std, number of seeds and the mean's 95% interval.

    ``std`` is the sample std (ddof=1); ``lo``, ``hi`` the interval by ``method``
    (:mod:`siamlab.results.intervals`); both NaN for one seed.
    """

    mean: float
    std: float
    n: int
    lo: float = math.nan
    hi: float = math.nan
    method: str = ""

    @classmethod
    def over_seeds(cls, values: np.ndarray) -> "Cell":
        """The cell of one value per seed (NaN = no value)."""
        iv = mean_interval(values)
        v = np.asarray(values, dtype=float)
        v = v[~np.isnan(v)]
        std = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
        return cls(iv.mean, std, iv.n, iv.lo, iv.hi, iv.method)

    def text(self, scale: float = 1.0) -> str:
        """``mean [lo, hi]`` (times ``scale``), 3 significant digits.

        The bounds are at the mean's precision; one seed shows the mean alone.
        """
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        decimals = _decimals(self.mean * scale)
        mean = f"{self.mean * scale:.{decimals}f}"
        if self.n < 2 or math.isnan(self.lo):
            return mean
        return f"{mean} [{self.lo * scale:.{decimals}f}, {self.hi * scale:.{decimals}f}]"


def difference_text(d: Difference, scale: float = 1.0) -> str:
    """``+0.120* [0.050, 0.190]`` (``*``: the interval excludes 0), 3 significant digits.

    Digits follow the largest of the difference and its bounds; without an interval
    (a side with one seed) the difference alone.
    """
    if math.isnan(d.diff):
        return "-"
    if math.isnan(d.lo):
        return f"{d.diff * scale:+.{_decimals(d.diff * scale)}f}"
    decimals = _decimals(max(abs(d.lo), abs(d.hi), abs(d.diff)) * scale)
    mark = EXCLUDES_ZERO if d.excludes_zero else ""
    bounds = f"[{d.lo * scale:.{decimals}f}, {d.hi * scale:.{decimals}f}]"
    return f"{d.diff * scale:+.{decimals}f}{mark} {bounds}"
