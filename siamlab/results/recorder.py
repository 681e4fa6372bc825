"""Collects diagnostic values during a run and builds the run's xarray Dataset."""

from typing import Any

import numpy as np
import xarray as xr

from siamlab.results.schema import DIMS, dim_coordinate, spec

Value = float | np.ndarray | str


class Recorder:
    """An in-memory table of values keyed by variable and step/epoch index.

    Values are checked against :mod:`siamlab.results.schema` as they arrive. The
    recorder's state goes into checkpoints, so a resumed run's results equal an
    uninterrupted run's.
    """

    def __init__(self) -> None:
        self._values: dict[str, dict[int, Value]] = {}

    def add(self, index: int, values: dict[str, Any]) -> None:
        """Record ``values`` (name -> float, 1-D array or str) at step/epoch ``index``."""
        for name, value in values.items():
            vs = spec(name)
            if isinstance(value, str):
                if len(vs.dims) != 1:
                    raise ValueError(f"{name} expects dims {vs.dims}, got a string")
                self._values.setdefault(name, {})[index] = value
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.ndim != len(vs.dims) - 1:
                raise ValueError(
                    f"{name} expects dims {vs.dims}, got an array of shape {arr.shape}"
                )
            self._values.setdefault(name, {})[index] = float(arr) if arr.ndim == 0 else arr

    def last(self, name: str) -> Value | None:
        """The most recent value of ``name``, or None."""
        series = self._values.get(name)
        return series[max(series)] if series else None

    def state_dict(self) -> dict[str, dict[int, Value]]:
        """A picklable copy of everything recorded."""
        return {k: dict(v) for k, v in self._values.items()}

    def load_state_dict(self, state: dict[str, dict[int, Value]]) -> None:
        """Restore from :meth:`state_dict`."""
        self._values = {k: dict(v) for k, v in state.items()}

    def to_dataset(self, attrs: dict[str, Any]) -> xr.Dataset:
        """Build the Dataset: one variable per recorded name, dims as in the schema."""
        data_vars = {}
        coords: dict[str, np.ndarray] = {}
        for name, series in self._values.items():
            vs = spec(name)
            index = np.array(sorted(series), dtype=np.int64)
            values = np.stack([np.asarray(series[i]) for i in index])
            dim = vs.dims[0]
            coords[dim] = np.union1d(coords.get(dim, index), index)
            da = xr.DataArray(values, dims=vs.dims, coords={dim: index})
            for axis, extra in enumerate(vs.dims[1:], start=1):
                da = da.assign_coords({extra: dim_coordinate(extra, values.shape[axis])})
            da.attrs = {"long_name": vs.long_name, "units": vs.units, **vs.extra}
            data_vars[name] = da
        ds = xr.Dataset(data_vars).reindex(coords)
        for name, da in data_vars.items():  # strings: "" where not recorded (not NaN)
            if da.dtype.kind == "U":
                ds[name] = ds[name].where(ds[name].notnull(), "").astype(str)
        for dim, dim_spec in DIMS.items():
            if dim in ds.coords:
                ds[dim].attrs = {"long_name": dim_spec.long_name, "units": dim_spec.units}
        for name in data_vars:  # reindex keeps attrs, but be explicit for new dims
            ds[name].attrs = data_vars[name].attrs
        ds.attrs = attrs
        return ds
