import numpy as np
import pytest

from siamlab.errors import ResultsError
from siamlab.results.recorder import Recorder
from siamlab.results.schema import variables
from siamlab.results.store import open_run, open_study, write_run


def _recorder(steps: int, epochs: int, d: int = 4) -> Recorder:
    rec = Recorder()
    for s in range(1, steps + 1):
        rec.add(s, {"loss": -s / steps, "lr": 0.1, "z_std_train": 0.5})
    for e in range(1, epochs + 1):
        rec.add(e, {"knn_top1": 0.1 * e, "z_channel_std_eval": np.full(d, 0.01 * e)})
    return rec


def test_dataset_follows_the_schema():
    ds = _recorder(6, 2).to_dataset({"status": "running"})
    assert ds["loss"].dims == ("step",) and list(ds["step"].values) == [1, 2, 3, 4, 5, 6]
    assert ds["z_channel_std_eval"].dims == ("epoch", "channel")
    assert list(ds["channel"].values) == [0, 1, 2, 3]
    for name in ds.data_vars:
        assert ds[name].attrs["long_name"] == variables()[name].long_name
        assert "units" in ds[name].attrs
    for dim in ds.dims:
        assert dim in ds.coords and "long_name" in ds[dim].attrs
    assert ds.attrs["status"] == "running"


def test_unknown_variable_and_wrong_shape_are_refused():
    rec = Recorder()
    with pytest.raises(KeyError):
        rec.add(1, {"made_up": 1.0})
    with pytest.raises(ValueError):
        rec.add(1, {"loss": np.zeros(3)})


def test_round_trip_and_study(tmp_path):
    attrs = {"status": "finished", "config": "a: 1\n"}
    write_run(tmp_path / "st" / "a" / "seed0", _recorder(6, 2).to_dataset({**attrs, "seed": 0}))
    write_run(tmp_path / "st" / "a" / "seed1", _recorder(6, 2).to_dataset({**attrs, "seed": 1}))
    partial = {**attrs, "status": "running", "seed": 0}
    write_run(tmp_path / "st" / "b" / "seed0", _recorder(3, 1).to_dataset(partial))
    one = open_run(tmp_path / "st" / "a" / "seed0")
    assert one["loss"].values[-1] == pytest.approx(-1.0)
    study = open_study(tmp_path / "st")
    assert study["loss"].dims == ("variant", "seed", "step")
    assert list(study["variant"].values) == ["a", "b"]
    assert list(study["seed"].values) == [0, 1]
    b = study["loss"].sel(variant="b", seed=0)
    assert np.isnan(b.sel(step=6))  # the unfinished run is padded
    assert study["status"].sel(variant="b", seed=0).item() == "running"
    assert np.isnan(study["loss"].sel(variant="b", seed=1)).all()  # missing run


def test_open_errors(tmp_path):
    with pytest.raises(ResultsError, match="no runs"):
        open_study(tmp_path)
    (tmp_path / "metrics.nc").write_text("garbage")
    with pytest.raises(ResultsError, match="not a readable"):
        open_run(tmp_path)


@pytest.mark.parametrize("writer", ["netcdf4", "h5netcdf"])
@pytest.mark.parametrize("reader", ["netcdf4", "h5netcdf"])
def test_either_netcdf_library_reads_what_the_other_wrote(tmp_path, writer, reader):
    """siamlab writes with netCDF4 (h5netcdf before 2026-12-07, and where netCDF4 is
    missing): a results file, its string states and its attrs, reads back the same."""
    import xarray as xr

    from siamlab.results.store import NETCDF_ENGINE
    from tests.conftest import make_run

    assert NETCDF_ENGINE == "netcdf4"  # installed with siamlab
    make_run(tmp_path, "good", 0)
    ds = open_run(tmp_path / "toy" / "good" / "seed0")
    assert ds["verdict"].dtype.kind == "U" and isinstance(ds.attrs["config"], str)
    ds.attrs["threads"] = 2
    ds.to_netcdf(tmp_path / "x.nc", engine=writer)
    with xr.open_dataset(tmp_path / "x.nc", engine=reader) as back:
        assert back.load().identical(ds)
