"""CollapseMonitor: siamlab's hooks for a loop of your own, on synthetic steps and epochs."""

import copy
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.data import TensorDataset

from siamlab.errors import ConfigError
from siamlab.monitor import CollapseMonitor, training_parts
from siamlab.results.schema import spec

pytestmark = pytest.mark.usefixtures("one_thread")

D = 8  # dim of z
DIAG = {"uniformity_samples": 64, "verdict": {"start_steps": 2}}


class Encoder(nn.Module):
    """A model named as lightly names it: backbone, projection_head, prediction_head."""

    def __init__(self, collapsed: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Linear(12, 16)
        self.projection_head = nn.Linear(16, D)
        self.prediction_head = nn.Linear(D, D)
        if collapsed:  # every image maps to one point: z = b
            nn.init.zeros_(self.projection_head.weight)
            nn.init.ones_(self.projection_head.bias)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.backbone(x.flatten(1))  # (B, 16)
        z = self.projection_head(h)  # (B, d)
        return h, z, self.prediction_head(z)


def _images(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 2, 2, generator=g), torch.arange(n) % 2)


def _monitor(model: Encoder, epochs: int, **kw) -> CollapseMonitor:
    parts = {"backbone": model.backbone, "projector": model.projection_head}
    parts["predictor"] = model.prediction_head
    return CollapseMonitor(model, epochs, 2, DIAG, embed=model.embed, parts=parts, **kw)


def _aligned_steps(monitor: CollapseMonitor, steps: int, seed: int) -> None:
    """Steps whose predictions equal the other view's z: cos(p, z) = 1, the loss -1."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        z1, z2 = torch.randn(16, D, generator=g), torch.randn(16, D, generator=g)
        monitor.step(z1, z2, 3 * z2, 2 * z1, lr=0.1)


def test_step_values_are_the_closed_forms_and_the_loss_defaults_to_eq_4():
    monitor = _monitor(Encoder(), epochs=1)
    z = torch.randn(16, D)
    same = monitor.step(z, z, 2 * z, z, h1=z, h2=-z)  # p = c z: cos 1; the views identical
    assert same["loss"] == pytest.approx(-1.0)  # no loss given: -(cos(p1,z2) + cos(p2,z1)) / 2
    assert same["pz_cosine_train"] == pytest.approx(1.0)
    assert same["z_alignment_train"] == pytest.approx(0.0, abs=1e-6)
    assert same["h_branch_cosine_train"] == pytest.approx(-1.0)
    assert math.isnan(same["lr"])  # neither an lr nor an optimiser
    opposite = monitor.step(z, z, -z, -z, loss=torch.tensor(0.25))
    assert opposite["loss"] == 0.25 and opposite["pz_cosine_train"] == pytest.approx(-1.0)
    assert "h_branch_cosine_train" not in opposite  # no h handed in
    assert monitor.to_dataset()["h_branch_cosine_train"].isnull().values.tolist() == [False, True]


def test_the_monitor_leaves_the_callers_graph_and_gradients_alone():
    def loss_and_grads(watch: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = Encoder()
        x1, x2 = torch.randn(16, 3, 2, 2), torch.randn(16, 3, 2, 2)
        (h1, z1, p1), (h2, z2, p2) = model.embed(x1), model.embed(x2)
        loss = -(nn.functional.cosine_similarity(p1, z2.detach()).mean())
        if watch:  # before backward: the monitor must not touch the graph
            opt = torch.optim.SGD(model.parameters(), lr=0.3)
            monitor = _monitor(model, epochs=1, optimizer=opt)
            values = monitor.step(z1, z2, p1, p2, loss, h1=h1, h2=h2)
            assert values["lr"] == 0.3 and z1.requires_grad and loss.grad_fn is not None
            assert all(p.grad is None for p in model.parameters())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    (plain, grads), (watched, watched_grads) = loss_and_grads(False), loss_and_grads(True)
    assert torch.equal(plain, watched)
    assert all(torch.equal(a, b) for a, b in zip(grads, watched_grads, strict=True))


def test_grad_norms_come_from_the_named_parts():
    model = Encoder()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    values = _monitor(model, epochs=1).step(*(torch.randn(4, D) for _ in range(4)))
    sizes = [sum(p.numel() for p in m.parameters()) for m in model.children()]
    np.testing.assert_allclose(values["grad_norm"], np.sqrt(sizes))
    outputs = (torch.randn(4, D) for _ in range(4))
    unnamed = CollapseMonitor(nn.Linear(2, 2), epochs=1).step(*outputs)
    assert np.isnan(unnamed["grad_norm"]).all()  # no backbone/projector/predictor


def test_a_model_that_maps_every_image_to_one_point_is_judged_collapsed():
    monitor = _monitor(Encoder(collapsed=True), epochs=3)
    for epoch in range(1, 4):
        _aligned_steps(monitor, 3, seed=epoch)  # the loss is at -1
        values = monitor.epoch(_images(32, 0), _images(24, 1))
        assert values["z_residual_norm"] == pytest.approx(0.0, abs=1e-3)
        assert values["verdict"] == "collapsed"
    verdict = monitor.verdict
    assert (verdict.verdict, verdict.onset_epoch, verdict.provisional) == ("collapsed", 1, False)
    ds = monitor.to_dataset(study="mine", seed=3)
    assert ds.attrs["verdict"] == "collapsed" and ds.attrs["verdict_onset_epoch"] == 1
    assert ds.attrs["status"] == "finished" and ds.attrs["study"] == "mine"
    assert ds.attrs["std_reference"] == pytest.approx(1 / math.sqrt(D))
    assert ds.attrs["device"] == "cpu" and ds.attrs["threads"] == torch.get_num_threads()
    assert list(ds["run_verdict"].values) == ["collapsed"] * 3


def test_a_spread_out_model_is_healthy_and_its_dataset_has_siamlabs_schema():
    model = Encoder()
    monitor = _monitor(model, epochs=2)
    train, test = _images(40, 0), _images(24, 1)
    for _ in range(2):
        _aligned_steps(monitor, 3, seed=0)
        monitor.epoch(train, test)
    assert monitor.verdict.verdict == "healthy" and monitor.verdict.provisional  # 2 < 3 epochs
    ds = monitor.to_dataset()
    assert ds.sizes == {"step": 6, "epoch": 2, "channel": D, "component": 16, "module": 3}
    assert ds.attrs["status"] == "finished" and ds.attrs["verdict_provisional"] == 1
    for name, var in ds.data_vars.items():
        declared = spec(str(name))
        assert var.dims == declared.dims, name
        named = {"long_name": declared.long_name, "units": declared.units}
        assert var.attrs == {**named, **declared.extra}, name
    with torch.no_grad():  # the eval-mode std of z is that of model.embed on the test set
        z = model.embed(test.tensors[0])[1]
    z = z / z.norm(dim=1, keepdim=True)
    expected = float(z.std(0, correction=0).mean())  # the population std of Fig. 2
    assert ds["z_std_eval"].values[-1] == pytest.approx(expected, rel=1e-5)
    assert model.training  # the eval-mode passes restored the mode


def test_a_monitor_restored_mid_epoch_continues_as_if_never_stopped():
    model = Encoder()
    train, test = _images(40, 0), _images(24, 1)
    through, resumed = _monitor(model, epochs=2), _monitor(model, epochs=2)
    _aligned_steps(through, 3, seed=1)
    through.epoch(train, test)
    _aligned_steps(through, 2, seed=2)
    resumed.load_state_dict(copy.deepcopy(through.state_dict()))  # a checkpoint mid-epoch 2
    for monitor in (through, resumed):
        _aligned_steps(monitor, 2, seed=3)
        monitor.epoch(train, test)
    a, b = through.to_dataset(), resumed.to_dataset()
    assert a.sizes["step"] == 7 and b.attrs["created"] == a.attrs["created"]
    xr.testing.assert_identical(
        a.drop_vars("images_per_second"),
        b.drop_vars("images_per_second").assign_attrs(updated=a.attrs["updated"]),
    )
    assert resumed.verdict == through.verdict


def test_without_num_classes_there_is_no_knn_and_tensorboard_is_written(tmp_path):
    model = Encoder()
    monitor = CollapseMonitor(model, 1, embed=model.embed, diagnostics=DIAG, log_dir=tmp_path)
    _aligned_steps(monitor, 2, seed=0)
    values = monitor.epoch(_images(32, 0), _images(16, 1))
    monitor.close()
    assert "knn_top1" not in values and "z_std_eval" in values
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="knn_kk"):
        CollapseMonitor(Encoder(), 1, diagnostics={"knn_kk": 3})
    with pytest.raises(ConfigError, match="stop_grad, no_stop_grad"):
        training_parts("studies/stopgrad.yaml")  # two variants, none chosen


def test_import_siamlab_stays_light_and_exports_the_monitor_lazily():
    code = "import sys, siamlab; assert 'torch' not in sys.modules, 'siamlab imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    import siamlab

    assert siamlab.CollapseMonitor is CollapseMonitor
    assert siamlab.training_parts is training_parts
    with pytest.raises(AttributeError, match="no attribute 'Monitor'"):
        _ = siamlab.Monitor
