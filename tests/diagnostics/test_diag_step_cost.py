"""The step hooks' cheap paths give the values of the plain formulas they replace.

Shared unit rows, one host sync per hook, an in-place F and one TensorBoard event per
step (README, "Speed") change no recorded value: bit for bit, except the train std's
two-pass reduction, which equals ``std``'s to float rounding.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from siamlab.diagnostics.geometry import alignment, branch_cosine
from siamlab.diagnostics.gradients import grad_norm, module_grad_norms
from siamlab.diagnostics.predictor_hook import PredictorAlignmentHook
from siamlab.diagnostics.std import centre_ratio, mean_channel_std, unit_mean_channel_std
from siamlab.diagnostics.std_hooks import TrainStdHook
from siamlab.diagnostics.step_hooks import BatchGeometryHook, pair_cosines
from siamlab.diagnostics.verdict import VERDICTS
from siamlab.models.siamese import SiameseOutput
from siamlab.objectives import ObjectiveConfig, simsiam_loss_terms
from siamlab.reporting.tensorboard import TensorBoardSink
from siamlab.train.views import StepView, module_gradients, step_view


def _output(g: torch.Generator, b: int = 64, d: int = 32, targets: bool = False, h: bool = True):
    def r(k: int = d) -> torch.Tensor:
        return torch.randn(b, k, generator=g) * torch.rand(1, generator=g) * 10

    hs = (r(48), r(48)) if h else (None, None)
    ts = (r(), r()) if targets else (None, None)
    out = SiameseOutput(hs[0], hs[1], r(), r(), r(), r(), ts[0], ts[1])  # type: ignore[arg-type]
    out.z1[0] = 0.0  # a zero row stays zero (eps 1e-12)
    return out


@pytest.mark.parametrize("targets", [False, True])
@pytest.mark.parametrize("h", [True, False])
def test_batch_geometry_gives_the_plain_formulas_bit_for_bit(targets, h):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        out = _output(g, targets=targets, h=h)
        values = BatchGeometryHook().on_step(StepView(1, 0, 0.0, 0.1, out, 64))
        t1, t2 = out.targets()
        per_image = (pair_cosines(out.p1, t2) + pair_cosines(out.p2, t1)) / 2
        assert values["pz_cosine_train"] == float(per_image.mean())
        sem = float(per_image.std(correction=1)) / math.sqrt(64)
        assert values["pz_cosine_sem_train"] == sem
        assert values["z_alignment_train"] == alignment(out.z1, out.z2)
        assert values["z_centre_ratio_train"] == centre_ratio(out.z1)
        if h:
            assert values["h_branch_cosine_train"] == branch_cosine(out.h1, out.h2)
        else:
            assert "h_branch_cosine_train" not in values


def test_cosine_similarity_is_the_dot_product_of_unit_rows():
    g = torch.Generator().manual_seed(1)
    for scale in (1e-3, 1.0, 1e3):
        a, b = torch.randn(128, 512, generator=g) * scale, torch.randn(128, 512, generator=g)
        a[3] = 0.0
        units = (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=1)
        assert torch.equal(units, pair_cosines(a, b))


def test_train_std_equals_welford_std_to_float_rounding():
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        out = _output(g, b=128, d=512)
        value = TrainStdHook().on_step(StepView(1, 0, 0.0, 0.1, out, 128))["z_std_train"]
        assert value == pytest.approx(mean_channel_std(out.z1), rel=1e-13, abs=0)
    same = F.normalize(torch.randn(1, 16, generator=g).double(), dim=1).expand(100, 16)
    assert float(unit_mean_channel_std(same)) < 1e-15  # collapsed: 0 up to rounding


def test_unit_rows_are_computed_once_per_view_and_targets_default_to_z():
    out = _output(torch.Generator().manual_seed(3))
    kept = out.z1.clone()
    view = StepView(1, 0, 0.0, 0.1, out, 64)
    z1 = view.unit_rows("z1")
    assert view.unit_rows("z1") is z1 and view.unit_rows("t1") is z1
    assert torch.equal(z1, F.normalize(out.z1, dim=1))  # F.normalize's bits, zero row too
    assert torch.equal(view.unit_rows("z1", torch.float64), F.normalize(out.z1.double(), dim=1))
    assert torch.equal(out.z1, kept)  # normalised in a buffer of its own, not in place
    with pytest.raises(ValueError, match="h1"):
        StepView(1, 0, 0.0, 0.1, out._replace(h1=None), 64).unit_rows("h1")


@pytest.mark.parametrize("targets", [False, True])
@pytest.mark.parametrize("symmetry", ["symmetric", "asymmetric"])
def test_step_hooks_take_the_loss_rows_and_record_the_same_bits(targets, symmetry):
    """The loss's unit rows stand in for the view's own: the same values, no second pass."""
    g = torch.Generator().manual_seed(6)
    out = _output(g, b=128, d=64, targets=targets)
    _, rows = simsiam_loss_terms(out, ObjectiveConfig(symmetry=symmetry))
    net = nn.Module()
    plain = step_view(1, 0, 0.0, 0.1, out, 128, net, {})
    shared = step_view(1, 0, 0.0, 0.1, out, 128, net, {}, rows)
    t = "t" if targets else "z"  # the targets' field: t1, t2, or z itself
    for name, field in (("p1", "p1"), ("t2", f"{t}2")):  # the loss's storage, not a copy
        assert shared.unit_rows(field).data_ptr() == rows[name].data_ptr()
    for hook in (BatchGeometryHook(), TrainStdHook()):
        assert hook.on_step(shared) == hook.on_step(plain)
    wrong = step_view(1, 0, 0.0, 0.1, out, 128, net, {}, {"p1": rows["p1"].double()})
    assert wrong.unit_rows("p1").data_ptr() != rows["p1"].data_ptr()  # another dtype: anew
    assert torch.equal(wrong.unit_rows("p1"), rows["p1"])


@pytest.mark.parametrize("b", [30, 64])  # N = 2B = 60, or a power of 2 (one pass less)
def test_in_place_f_is_the_ema_formula_bit_for_bit_and_restarts_each_epoch(b):
    g = torch.Generator().manual_seed(4)
    hook, rho, saved = PredictorAlignmentHook(rho=0.3), 0.3, None
    f = torch.zeros(())
    for step in range(1, 13):
        epoch = (step - 1) // 5  # 5 steps an epoch
        z1, z2 = (torch.randn(b, 16, generator=g) * 10 ** (step % 5 - 2) for _ in range(2))
        hook.on_step(StepView(step, epoch, 0.0, 0.1, SiameseOutput(z1, z2, z1, z2, z1, z2), b))
        z = torch.cat([z1, z2])
        corr = (z.T @ z).double() / (2 * b)
        f = corr if step % 5 == 1 else rho * f + (1 - rho) * corr
        assert torch.equal(hook._corr, f), step
        if step == 7:
            saved, at_save = hook.state_dict(), f.clone()
    assert saved is not None and torch.equal(saved["corr"], at_save)  # a copy, not F
    resumed = PredictorAlignmentHook(rho=0.3)
    resumed.load_state_dict(saved)
    resumed.on_step(StepView(8, 1, 0.0, 0.1, SiameseOutput(*[torch.ones(b, 16)] * 6), b))
    assert torch.equal(saved["corr"], at_save)  # the loaded state is not written either


def test_grad_norms_of_all_parts_in_one_pass_equal_each_part_alone():
    net = nn.Module()
    net.backbone, net.projector, net.predictor = nn.Linear(8, 8), nn.Linear(8, 4), nn.Identity()
    loss = net.projector(net.backbone(torch.randn(5, 8))).square().sum()
    loss.backward()
    grads = module_gradients(net)
    norms = module_grad_norms(grads)
    assert norms[:2] == [grad_norm(grads["backbone"]), grad_norm(grads["projector"])]
    assert math.isnan(norms[2])
    assert all(math.isnan(v) for v in module_grad_norms({}))


def test_tensorboard_scalars_in_one_event_read_back_as_add_scalar_writes_them(tmp_path):
    values = {
        "loss": -0.25,
        "z_std_train": 0.123456789,
        "grad_norm": [1.5, 2.5, math.nan],
        "verdict": "healthy",
    }
    sink = TensorBoardSink(tmp_path / "one", purge_step=1)
    plain = SummaryWriter(str(tmp_path / "plain"), purge_step=1)
    for step in (1, 2):
        sink.write("step", step, values)
        plain.add_scalar("step/loss", -0.25, step)
        plain.add_scalar("step/z_std_train", 0.123456789, step)
        plain.add_scalar("step/grad_norm/backbone", 1.5, step)
        plain.add_scalar("step/grad_norm/projector", 2.5, step)
        plain.add_scalar("step/verdict_code", VERDICTS.index("healthy"), step)
    sink.close()
    plain.close()
    one = EventAccumulator(str(tmp_path / "one")).Reload()
    ref = EventAccumulator(str(tmp_path / "plain")).Reload()
    assert sorted(one.Tags()["scalars"]) == sorted(ref.Tags()["scalars"])
    for tag in ref.Tags()["scalars"]:
        got = [(e.step, e.value) for e in one.Scalars(tag)]
        assert got == [(e.step, e.value) for e in ref.Scalars(tag)], tag
    assert "step/verdict/text_summary" in one.Tags()["tensors"]  # the text entry
