"""Short real runs on tiny real data (digits): results, TensorBoard, resume, failures."""

import numpy as np
import pytest
import torch
import xarray as xr
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from siamlab.results.store import open_run, open_study
from siamlab.run.train_run import train_run
from siamlab.study.execute import run_study
from siamlab.train.checkpoint import load_checkpoint
from tests.conftest import PIL_LOADER, kill_after_epoch, tiny_runs


def test_tiny_run_writes_valid_results_and_tensorboard(tiny):
    outcome = train_run(tiny, progress=False)
    assert outcome.status == "finished"
    ds = open_run(outcome.directory)
    assert ds.attrs["status"] == "finished" and ds.attrs["variant"] == "default"
    assert "stop_grad: true" in ds.attrs["config"]
    assert ds.sizes["step"] == 8 and ds.sizes["epoch"] == 2 and ds.sizes["channel"] == 64
    assert np.isfinite(ds["loss"]).all() and (ds["knn_top1"] > 0).all()
    assert ds["z_std_eval"].attrs["bn_mode"] == "eval"
    assert ds.attrs["std_reference"] == pytest.approx(1 / 8)
    assert (outcome.directory / "config.yaml").is_file()
    events = list((outcome.directory / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(outcome.directory / "tb")).Reload()
    tags = acc.Tags()["scalars"]
    assert {"step/loss", "step/z_std_train", "epoch/knn_top1", "epoch/z_std_eval"} <= set(tags)
    losses = [e.value for e in acc.Scalars("step/loss")]
    np.testing.assert_allclose(losses, ds["loss"].values, rtol=1e-6)


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    sets = ["train.epochs=3", *PIL_LOADER]  # the quick profile's loader: PIL views, a worker
    full = train_run(tiny_runs(tmp_path / "a", sets=sets)[0], progress=False)

    interrupted = tiny_runs(tmp_path / "b", sets=sets)[0]
    kill_after_epoch(interrupted, 2, monkeypatch)
    assert open_run(interrupted.directory()).attrs["status"] == "running"
    resumed = train_run(interrupted, progress=False)

    a, b = open_run(full.directory), open_run(resumed.directory)
    for name in ("loss", "z_std_train", "knn_top1", "z_channel_std_eval", "lr"):
        xr.testing.assert_equal(a[name], b[name])  # bit-identical on CPU
    wa = load_checkpoint(full.directory / "checkpoints")["model"]
    wb = load_checkpoint(resumed.directory / "checkpoints")["model"]
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_resume_refuses_a_different_config(tmp_path):
    train_run(tiny_runs(tmp_path, sets=["train.max_steps=2"])[0], progress=False)
    changed = tiny_runs(tmp_path, sets=["train.max_steps=2", "optim.base_lr=0.5"])[0]
    from siamlab.errors import ResultsError

    with pytest.raises(ResultsError, match="optim.base_lr: 0.1 -> 0.5"):
        train_run(changed, progress=False)


def test_study_skips_finished_runs_and_survives_a_failure(tmp_path):
    runs = tiny_runs(
        tmp_path,
        variants={"sg": {}, "bad": {"data": {"dataset": "npz", "root": str(tmp_path / "none")}}},
        sets=["train.max_steps=2"],
    )
    reports = run_study(runs, progress=False, log=lambda _: None)
    assert [r.status for r in reports] == ["finished", "failed"]
    assert "none" in reports[1].error
    again = run_study(runs, progress=False, log=lambda _: None)
    assert again[0].status == "skipped"
    assert open_study(tmp_path / "tiny")["loss"].dims == ("variant", "seed", "step")
