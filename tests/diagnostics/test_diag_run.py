"""Real short runs: the diagnostics suite lands in metrics.nc and TensorBoard."""

import math

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from siamlab.diagnostics.verdict import VERDICTS
from siamlab.results.schema import variables
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from tests.conftest import tiny_runs


def test_tiny_run_writes_spectra_verdict_and_grad_norms(tmp_path):
    outcome = train_run(tiny_runs(tmp_path)[0], progress=False)
    ds = open_run(outcome.directory)
    d = ds.attrs["dim"]
    for name in ("z_spectrum", "p_spectrum", "h_spectrum", "pred_cosines", "pred_eigenvalues"):
        assert ds[name].dims == ("epoch", "component"), name
    assert ds.sizes["component"] == max(d, 8 * 4)  # z/p: d; h of convnet_small(width 8)
    spec = ds["z_spectrum"].sel(epoch=2).values
    assert (np.diff(spec) <= 0).all() and (spec > 0).all()  # descending, clamped for logs
    assert ds["grad_norm"].dims == ("step", "module")
    assert list(ds["module"].values) == ["backbone", "projector", "predictor"]
    assert (ds["grad_norm"].values > 0).all()  # every part learns with stop-grad
    assert set(ds["verdict"].values) <= set(VERDICTS)
    assert ds.attrs["verdict"] == ds["run_verdict"].values[-1]
    assert ds.attrs["verdict_evidence"] == ds["run_verdict_evidence"].values[-1]
    assert ds.attrs["verdict_hold_evaluations"] == pytest.approx(3)
    assert 0 <= float(ds["z_residual_norm"].sel(epoch=2)) <= 1
    for name in ds.data_vars:
        assert ds[name].attrs["long_name"] == variables()[name].long_name
    for dim in ds.dims:
        assert "long_name" in ds[dim].attrs and "units" in ds[dim].attrs
    assert 1 <= float(ds["z_rankme"].sel(epoch=2)) <= d
    acc = EventAccumulator(str(outcome.directory / "tb")).Reload()
    assert {"epoch/spectra", "epoch/predictor"} <= set(acc.Tags()["images"])
    assert "step/grad_norm/backbone" in acc.Tags()["scalars"]
    assert "epoch/z_channel_std_eval" in acc.Tags()["histograms"]


def test_identity_predictor_skips_alignment_and_has_nan_grad_norm(tmp_path):
    spec = tiny_runs(tmp_path, sets=["model.predictor.kind=none", "train.max_steps=2"])[0]
    ds = open_run(train_run(spec, progress=False).directory)
    assert "pred_cosine" not in ds.data_vars
    assert np.isnan(ds["grad_norm"].sel(module="predictor")).all()
    assert np.isfinite(ds["grad_norm"].sel(module="backbone")).all()


def test_a_run_cut_by_max_steps_reports_alignment_at_its_last_epoch(tmp_path):
    # 4 steps an epoch: 10 steps end in epoch 3 of 4, due (the run's last) though 3 % 2 != 0
    sets = ["train.epochs=4", "train.max_steps=10", "diagnostics.predictor_every_epochs=2"]
    ds = open_run(train_run(tiny_runs(tmp_path, sets=sets)[0], progress=False).directory)
    assert list(ds["epoch"].values) == [1, 2, 3]
    assert np.isfinite(ds["pred_cosine"].sel(epoch=[1, 2, 3])).all()


def test_a_blown_up_run_is_unstable_and_does_not_crash_the_diagnostics(tmp_path):
    # the PIL path: there epoch 1 is judged unstable too (with the batched views its
    # evaluation, before the blow-up at step 5, sees a healthy output)
    pil = ["data.augment_batched=false", "data.num_workers=1"]
    spec = tiny_runs(tmp_path, sets=["optim.base_lr=1e6", *pil])[0]
    outcome = train_run(spec, progress=False)
    ds = open_run(outcome.directory)
    assert outcome.status == "diverged" and ds.attrs["verdict"] == "unstable"
    assert set(ds["verdict"].values) <= {"unstable", ""}  # the epoch with inf embeddings


# A short digits study in which no-stop-grad collapses (std*sqrt(d) < 0.3 and loss < -0.5
# from epoch ~5) and stop-grad does not (std*sqrt(d) ~0.97, loss ~-0.45 at the end).
PAIR = [
    "data.image_size=8",
    "data.train_limit=512",
    "data.test_limit=256",
    "model.width=16",
    "model.dim=128",
    "model.projector.hidden_dim=128",
    "train.batch_size=64",
    "train.epochs=12",
    "optim.base_lr=0.4",
    "train.threads=1",
    "diagnostics.knn_k=20",
    "diagnostics.eval_every_epochs=4",
    "diagnostics.spectrum_every_epochs=4",
    "diagnostics.predictor_every_epochs=12",
]


@pytest.mark.slow
def test_stop_grad_is_healthy_and_no_stop_grad_collapses(tmp_path):
    variants = {
        "sg": {"objective": {"stop_grad": True}},
        "nsg": {"objective": {"stop_grad": False}},
    }
    specs = tiny_runs(tmp_path, variants=variants, sets=PAIR)
    verdicts, std = {}, {}
    for spec in specs:
        ds = open_run(train_run(spec, progress=False).directory)
        verdicts[spec.variant] = ds.attrs["verdict"]
        std[spec.variant] = float(ds["z_std_eval"].isel(epoch=-1)) * math.sqrt(ds.attrs["dim"])
    assert verdicts == {"sg": "healthy", "nsg": "collapsed"}, (verdicts, std)
