"""One value per run of a metric (its final or best), and a metric over seeds (mean ± std)."""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from siamlab.results.runinfo import TIME_DIMS, run_std_references

Reduce = Literal["final", "best"]

SQRT_D = "*sqrt(d)"  # suffix: the variable times sqrt(d), e.g. z_std_eval*sqrt(d) (1 = spread)
LOWER_IS_BETTER = frozenset({"loss", "epoch_loss"})


def reduce_runs(ds: xr.Dataset, name: str, reduce: Reduce = "final") -> xr.DataArray:
    """One value per (variant, seed): the last recorded value, or the best over training.

    ``best`` is the minimum for losses and the maximum otherwise. NaN where a run has
    no value (missing run, metric not recorded yet). ``<name>*sqrt(d)`` is ``name``
    divided by each run's 1/sqrt(d) (its own d: a study may vary it).
    """
    if name.endswith(SQRT_D):
        return reduce_runs(ds, name.removesuffix(SQRT_D), reduce) / run_std_references(ds)
    da = ds[name]
    if not set(da.dims) & set(TIME_DIMS):  # one number per run, e.g. eval_linear_top1
        return da
    (dim,) = [d for d in da.dims if d in TIME_DIMS]
    if reduce == "best":
        return da.min(dim) if name in LOWER_IS_BETTER else da.max(dim)
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


@dataclass(frozen=True)
class Cell:
    """A metric over seeds: mean, sample std (ddof=1; NaN for one seed), number of seeds."""

    mean: float
    std: float
    n: int

    def text(self, scale: float = 1.0) -> str:
        """``mean ± std`` (times ``scale``), 3 significant digits, std at the mean's precision."""
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        m = abs(self.mean * scale)
        decimals = 3 if m == 0 else min(6, max(0, 2 - math.floor(math.log10(m))))
        mean = f"{self.mean * scale:.{decimals}f}"
        return mean if self.n < 2 else f"{mean} ± {self.std * scale:.{decimals}f}"
