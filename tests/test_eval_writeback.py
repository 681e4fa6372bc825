import numpy as np
import pytest
import xarray as xr

from siamlab.errors import ResultsError
from siamlab.evaluation.writeback import write_eval
from siamlab.results.store import open_run, open_study, write_run

ATTRS = {"recipe": "lars lr=0.32", "path": "fast", "data": "train/test", "checkpoint": "x.pt"}


def _run(study_dir, variant):
    ds = xr.Dataset(
        {"knn_top1": ("epoch", np.array([0.2, 0.3]), {"long_name": "kNN", "units": "1"})},
        coords={"epoch": [1, 2]},
        attrs={"study": "s", "variant": variant, "seed": 0, "status": "finished"},
    )
    return write_run(study_dir / variant / "seed0", ds).parent


def test_eval_variables_are_added_with_attrs_and_show_up_in_the_study(tmp_path):
    run_dir = _run(tmp_path, "a")
    _run(tmp_path, "b")
    write_eval(run_dir, {"eval_linear_top1": 0.5, "eval_linear_top5": 0.9}, ATTRS)
    write_eval(run_dir, {"eval_linear_top1": 0.6}, ATTRS)  # re-running overwrites
    ds = open_run(run_dir)
    assert ds["eval_linear_top1"].dims == () and float(ds["eval_linear_top1"]) == 0.6
    attrs = ds["eval_linear_top1"].attrs
    assert attrs["units"] == "1" and attrs["long_name"].startswith("linear-probe top-1")
    assert attrs["path"] == "fast" and attrs["recipe"] == "lars lr=0.32" and "evaluated" in attrs
    assert list(ds["knn_top1"].values) == [0.2, 0.3] and ds.attrs["status"] == "finished"
    assert not list(run_dir.glob(".*tmp*"))
    study = open_study(tmp_path)  # what compare reads: one value per (variant, seed)
    top1 = study["eval_linear_top1"]
    assert set(top1.dims) == {"variant", "seed"}
    assert float(top1.sel(variant="a", seed=0)) == 0.6
    assert np.isnan(float(top1.sel(variant="b", seed=0)))


def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    run_dir = _run(tmp_path, "a")
    before = (run_dir / "metrics.nc").read_bytes()

    def broken(self, path, **kwargs):
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(ResultsError, match="No space left"):
        write_eval(run_dir, {"eval_knn_top1": 0.5}, ATTRS)
    assert (run_dir / "metrics.nc").read_bytes() == before
    assert not list(run_dir.glob(".*tmp*"))


def test_new_results_file_for_a_checkpoint_outside_any_run(tmp_path):
    write_eval(tmp_path / "out", {"eval_knn_top1": 0.25}, ATTRS, {"status": "evaluated"})
    ds = open_run(tmp_path / "out")
    assert float(ds["eval_knn_top1"]) == 0.25 and ds.attrs["status"] == "evaluated"
    with pytest.raises(ValueError, match="eval_"):
        write_eval(tmp_path / "out", {"knn_top1": 0.1}, ATTRS)
