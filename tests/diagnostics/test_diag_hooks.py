"""Each hook on synthetic views/probe sets gives the closed-form value."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from siamlab.diagnostics.build import default_hooks
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.gradients import grad_norm, module_grad_norms
from siamlab.diagnostics.hooks import HookContext
from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.predictor_alignment import CorrelationEMA
from siamlab.diagnostics.predictor_hook import PredictorAlignmentHook
from siamlab.diagnostics.probe import ProbeEmbeddings
from siamlab.diagnostics.spectrum import CovarianceAccumulator
from siamlab.diagnostics.spectrum_hook import SpectrumHook, accumulate
from siamlab.diagnostics.std_hooks import EvalStdHook
from siamlab.diagnostics.step_hooks import BatchGeometryHook, GradNormHook
from siamlab.models.siamese import SiameseOutput
from siamlab.train.length import RunLength
from siamlab.train.views import EpochView, StepView, module_gradients, step_view


class FakeProbes:
    """A ProbeCache stand-in serving fixed embeddings."""

    def __init__(self, **sets: ProbeEmbeddings) -> None:
        self.sets = sets
        self.device = torch.device("cpu")

    def get(self, name: str) -> ProbeEmbeddings:
        return self.sets[name]

    def expect_stages(self, names: object) -> None:
        pass

    def stages(self, name: str) -> tuple[torch.Tensor, ...]:
        return ()  # no backbone stages: the stage hook records nothing


class Net(nn.Module):
    def __init__(self, d: int, predictor: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = nn.Linear(d, d)
        self.projector = nn.Linear(d, d)
        self.predictor = predictor if predictor is not None else nn.Linear(d, d)


def _emb(z: torch.Tensor, h: torch.Tensor | None = None, p: torch.Tensor | None = None):
    n = z.shape[0]
    return ProbeEmbeddings(z if h is None else h, z, z if p is None else p, torch.zeros(n).long())


def _step(model: nn.Module, out: SiameseOutput, step: int = 1, epoch: int = 0) -> StepView:
    return step_view(step, epoch, -0.5, 0.1, out, out.z1.shape[0], model, {})


def _epoch_view(epoch: int = 1) -> EpochView:
    return EpochView(epoch, 10, 1.0, 100, True)


def _hooks(cfg: DiagnosticsConfig, num_classes: int = 2, predictor: bool = True) -> list:
    return default_hooks(HookContext(cfg, 1, num_classes, False, predictor))


def test_grad_norms_per_module_and_nan_without_parameters():
    net = Net(4, predictor=nn.Identity())
    for p in net.backbone.parameters():
        p.grad = torch.full_like(p, 2.0)  # 20 entries of 2 -> sqrt(80)
    for p in net.projector.parameters():
        p.grad = torch.zeros_like(p)
    norms = module_grad_norms(module_gradients(net))
    assert norms[0] == pytest.approx(math.sqrt(80)) and norms[1] == 0.0
    assert math.isnan(norms[2])  # identity predictor: no parameters
    frozen = nn.Linear(3, 3).requires_grad_(False)
    assert module_gradients(frozen, ["weight"])["weight"] == ()
    assert math.isnan(grad_norm(())) and math.isnan(module_grad_norms({}, ["predictor"])[0])
    out = SiameseOutput(*(torch.randn(8, 4) for _ in range(6)))
    values = GradNormHook(step_every=2).on_step(_step(net, out, step=2))
    assert values["grad_norm"].shape == (3,)
    assert values["grad_norm"][0] == pytest.approx(math.sqrt(80))


def test_batch_geometry_closed_forms():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 32, generator=g)
    h = torch.randn(256, 16, generator=g)
    same = SiameseOutput(h, h, z, z, z, z)
    v = BatchGeometryHook().on_step(_step(Net(4), same))
    assert v["z_alignment_train"] == pytest.approx(0.0, abs=1e-12)  # identical views
    assert v["h_branch_cosine_train"] == pytest.approx(1.0)
    assert v["z_centre_ratio_train"] == pytest.approx(1 / math.sqrt(256), rel=0.3)  # ~1/sqrt(B)
    opposite = SiameseOutput(h, -h, z, -z, z, z)
    v = BatchGeometryHook().on_step(_step(Net(4), opposite))
    assert v["z_alignment_train"] == pytest.approx(4.0) and v["h_branch_cosine_train"] == -1.0
    const = torch.ones(64, 32)
    v = BatchGeometryHook().on_step(
        _step(Net(4), SiameseOutput(h[:64], h[:64], const, const, const, const))
    )
    assert v["z_centre_ratio_train"] == pytest.approx(1.0)


def test_eval_std_isotropic_and_constant():
    d = 256
    z = torch.randn(20000, d, generator=torch.Generator().manual_seed(1))
    v = EvalStdHook().on_epoch(_epoch_view(), FakeProbes(test=_emb(z)))
    assert v["z_std_eval"] * math.sqrt(d) == pytest.approx(1.0, abs=0.02)
    assert v["z_channel_std_eval"].shape == (d,)
    assert v["h_std_eval"] == pytest.approx(v["z_std_eval"])
    v = EvalStdHook().on_epoch(_epoch_view(), FakeProbes(test=_emb(torch.ones(50, d))))
    assert v["z_std_eval"] == 0.0 and v["p_std_eval"] == 0.0


def _power_law_features(n: int, c: int, alpha: float) -> torch.Tensor:
    """Rows whose centred covariance is exactly diag(i^-alpha), i = 1..c."""
    g = torch.Generator().manual_seed(2)
    basis = torch.cat(
        [torch.ones(n, 1, dtype=torch.float64), torch.randn(n, c, generator=g).double()], 1
    )
    q = torch.linalg.qr(basis).Q[:, 1:]  # (n, c) orthonormal, orthogonal to 1: zero mean
    lam = torch.arange(1, c + 1, dtype=torch.float64) ** -alpha
    return math.sqrt(n) * q * lam.sqrt() + 3.0  # an offset: the covariance is centred


def test_spectrum_hook_rank_k_power_law_and_isotropic():
    k, d, n = 8, 64, 1024
    z = torch.zeros(n, d)
    z[torch.arange(n), torch.arange(n) % k] = 1.0  # one-hot rows on k channels
    h = _power_law_features(n, 128, alpha=1.3)
    v = SpectrumHook(uniformity_samples=64).on_epoch(_epoch_view(), FakeProbes(probe=_emb(z, h=h)))
    # centred cov of k equiprobable one-hots: 1/k (k-1 times), then zeros (at the log floor)
    spec = v["z_spectrum"]
    assert spec.shape == (d,)
    np.testing.assert_allclose(spec[: k - 1], 1 / k, rtol=1e-12)
    assert (spec[k - 1 :] <= 1e-15 / k * 1.0001).all() and (spec > 0).all()
    assert v["z_erank"] == pytest.approx(k, rel=1e-9)  # equal singular values
    assert v["z_rankme"] == pytest.approx(k, rel=1e-3)
    assert v["z_erank_fraction"] == pytest.approx(k / d)
    assert v["h_alpha"] == pytest.approx(1.3, abs=1e-9) and v["h_alpha_r2"] == pytest.approx(1.0)
    iso = torch.randn(n, d, generator=torch.Generator().manual_seed(3))
    v = SpectrumHook(uniformity_samples=1024).on_epoch(_epoch_view(), FakeProbes(probe=_emb(iso)))
    assert v["z_uniformity"] == pytest.approx(-4 + 8 / d, abs=0.05)
    assert v["z_rankme"] > 0.9 * d and v["z_erank_fraction"] > 0.9
    assert v["z_centre_ratio"] == pytest.approx(math.sqrt(1 / n), rel=0.2)
    const = SpectrumHook(uniformity_samples=64).on_epoch(
        _epoch_view(), FakeProbes(probe=_emb(torch.ones(n, d)))
    )
    assert const["z_rankme"] == pytest.approx(1.0, abs=0.01) and const["z_centre_ratio"] == 1.0


def test_streamed_spectrum_equals_one_pass():
    x = torch.randn(1000, 48, generator=torch.Generator().manual_seed(4)) * 2 + 1
    for normalize in (False, True):
        one = CovarianceAccumulator(normalize=normalize)
        one.update(x)
        streamed = accumulate(x, normalize, chunk_size=37)
        assert torch.allclose(streamed.eigenvalues(), one.eigenvalues(), rtol=1e-10, atol=1e-14)
        assert torch.allclose(streamed.singular_values(), one.singular_values(), rtol=1e-10)


def _directpred_predictor(corr: torch.Tensor) -> nn.Linear:
    """W_p = U diag(sqrt(s / s_max)) U^T: a function of F (DirectPred), with a bias."""
    s, u = torch.linalg.eigh(corr)
    w = u @ torch.diag((s.clamp(min=0) / s.max()).sqrt()) @ u.T
    lin = nn.Linear(corr.shape[0], corr.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


def test_predictor_alignment_is_one_for_a_function_of_f():
    d, b = 16, 64
    g = torch.Generator().manual_seed(5)
    z1 = torch.randn(b, d, generator=g) @ torch.diag(torch.linspace(3, 0.5, d))
    z2 = z1 + 0.1 * torch.randn(b, d, generator=g)
    zz = torch.cat([z1, z2]).double()
    corr = zz.T @ zz / zz.shape[0]
    net = Net(d, predictor=_directpred_predictor(corr))
    hook = PredictorAlignmentHook(top=8)
    out = SiameseOutput(z1, z2, z1, z2, z1, z2)
    for step in range(1, 4):  # the same batch thrice: the EMA equals its correlation
        hook.on_step(_step(net, out, step=step))
    probe_z = torch.randn(500, d, generator=g).double()
    probe_p = net.predictor(probe_z).detach()
    v = hook.on_epoch(_epoch_view(), FakeProbes(probe=_emb(probe_z, p=probe_p)))
    assert v["pred_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert v["pred_commutator"] == pytest.approx(0.0, abs=1e-6)
    assert v["pred_asymmetry"] == pytest.approx(0.0, abs=1e-6)
    s = torch.linalg.eigvalsh(corr).flip(0)
    np.testing.assert_allclose(v["pred_eigenvalues"], (s / s[0]).sqrt().numpy(), atol=1e-6)
    # the hook's float32/float64 EMA equals DirectPred's CorrelationEMA
    ema = CorrelationEMA(rho=0.3)
    hook2 = PredictorAlignmentHook(rho=0.3)
    for step in range(1, 4):
        zs = [torch.randn(b, d, generator=g) for _ in range(2)]
        ema.update(torch.cat(zs))
        hook2.on_step(_step(net, SiameseOutput(zs[0], zs[1], *zs, *zs), step=step))
    assert torch.allclose(hook2._corr, ema.value, rtol=1e-5, atol=1e-6)


def test_predictor_alignment_skipped_without_predictor_parameters():
    d = 8
    net = Net(d, predictor=nn.Identity())
    hook = PredictorAlignmentHook.build(HookContext(DiagnosticsConfig(), 1, 2, False, False))
    z = torch.randn(32, d)
    hook.on_step(_step(net, SiameseOutput(z, z, z, z, z, z)))
    assert hook._corr is None  # nothing accumulated either
    assert hook.on_epoch(_epoch_view(), FakeProbes(probe=_emb(torch.randn(100, d)))) == {}


def test_predictor_alignment_keeps_f_only_in_epochs_it_reports():
    d = 8
    net = Net(d, predictor=nn.Linear(d, d))
    cfg = DiagnosticsConfig(predictor_every_epochs=2)
    hook = PredictorAlignmentHook.build(HookContext(cfg, 5, 2, False, True))
    always = PredictorAlignmentHook(epoch_every=2)  # epochs unknown: F every epoch
    z = torch.randn(32, d)
    out = SiameseOutput(z, z, z, z, z, z)
    kept = []
    for epoch0 in range(5):  # due: epoch 1 (first), 2, 4, 5 (last); not 3
        hook._corr = None
        hook.on_step(_step(net, out, epoch=epoch0))
        always.on_step(_step(net, out, epoch=epoch0))
        kept.append(hook._corr is not None)
        if kept[-1]:
            assert torch.equal(hook._corr, always._corr)
    assert kept == [True, True, False, True, True]


def test_predictor_alignment_keeps_f_in_the_epoch_max_steps_ends_the_run_in():
    d = 8
    net = Net(d, predictor=nn.Linear(d, d))
    cfg = DiagnosticsConfig(predictor_every_epochs=2)
    cut = RunLength(steps_per_epoch=4, epochs=5, total_steps=10)  # ends in epoch 3
    assert cut.last_epoch == 3 and RunLength(4, 5, 20).last_epoch == 5
    assert RunLength(4, 5, 8).last_epoch == 2 and RunLength(4, 5, 1).last_epoch == 1
    hook = PredictorAlignmentHook.build(HookContext(cfg, 5, 2, False, True, cut.last_epoch))
    z = torch.randn(32, d)
    out = SiameseOutput(z, z, z, z, z, z)
    kept = []
    for epoch0 in range(3):  # due: epoch 1 (first), 2, 3 (the run's last)
        hook._corr = None
        hook.on_step(_step(net, out, epoch=epoch0))
        kept.append(hook._corr is not None)
    assert kept == [True, True, True]


class ListSink:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, dict]] = []

    def write(self, scope, index, values):
        self.rows.append((scope, index, dict(values)))

    def close(self):
        pass


def test_monitor_runs_hooks_then_the_verdict():
    d = 64
    hooks = _hooks(DiagnosticsConfig(knn_k=5))
    sink = ListSink()
    g = torch.Generator().manual_seed(6)
    z = torch.randn(512, d, generator=g)
    emb = ProbeEmbeddings(z, z, z, (torch.arange(512) % 2))
    monitor = Monitor(hooks, [sink], lambda: FakeProbes(bank=emb, test=emb, probe=emb))
    net = Net(d)
    for step in range(1, 6):
        zs, ps = torch.randn(32, d, generator=g), torch.randn(32, d, generator=g)
        out = SiameseOutput(zs, zs, zs, zs, ps, ps)  # p unrelated to z: cos(p, z) ~ 0
        view = step_view(step, 0, -0.05 - 0.001 * step, 0.1, out, 32, net, {})
        monitor.on_step_end(view)
    monitor.on_epoch_end(EpochView(1, 5, 1.0, 160, True))
    scope, index, values = sink.rows[-1]
    assert scope == "epoch" and index == 1
    # -cos(p, z) ~ 0, but one evaluation is too young for a trend: not converged *yet*
    assert values["verdict"] == "healthy" == monitor.verdict
    assert values["verdict_evidence"].startswith("not converged yet")
    assert values["cosine_loss"] > -0.2
    assert {"z_spectrum", "pred_cosine", "knn_top1", "loss_jitter", "h_alpha"} <= set(values)
    assert "grad_norm" in sink.rows[0][2]


def _monitor_epoch(monitor: Monitor, sink: ListSink, steps: range, g: torch.Generator, net):
    for step in steps:
        zs = torch.randn(32, 16, generator=g)
        loss = -0.9 + 0.01 * math.sin(step)
        monitor.on_step_end(StepView(step, 0, loss, 0.1, SiameseOutput(*[zs] * 6), 32))


def test_monitor_state_resumes_mid_epoch_identically():
    emb = ProbeEmbeddings(
        *[torch.randn(256, 16, generator=torch.Generator().manual_seed(7))] * 3,
        torch.arange(256) % 2,
    )
    probes = lambda: FakeProbes(bank=emb, test=emb, probe=emb)  # noqa: E731
    net = Net(16)
    cfg = DiagnosticsConfig(knn_k=5)
    full_sink, cut_sink, resumed_sink = ListSink(), ListSink(), ListSink()
    full = Monitor(_hooks(cfg), [full_sink], probes)
    _monitor_epoch(full, full_sink, range(1, 9), torch.Generator().manual_seed(8), net)
    full.on_epoch_end(EpochView(1, 8, 1.0, 256, True))

    g = torch.Generator().manual_seed(8)
    cut = Monitor(_hooks(cfg), [cut_sink], probes)
    _monitor_epoch(cut, cut_sink, range(1, 5), g, net)
    resumed = Monitor(_hooks(cfg), [resumed_sink], probes)
    resumed.load_state_dict(cut.state_dict())
    _monitor_epoch(resumed, resumed_sink, range(5, 9), g, net)
    resumed.on_epoch_end(EpochView(1, 8, 1.0, 256, True))
    a, b = full_sink.rows[-1][2], resumed_sink.rows[-1][2]
    for key in ("epoch_loss", "loss_jitter", "pred_cosine", "pred_commutator", "verdict"):
        assert a[key] == b[key], key


def test_pz_cosine_is_minus_the_symmetric_cosine_loss_and_uses_momentum_targets():
    from siamlab.config.objective import ObjectiveConfig
    from siamlab.objectives import simsiam_loss

    g = torch.Generator().manual_seed(1)
    h, z1, z2, p1, p2, t1, t2 = (torch.randn(64, 16, generator=g) for _ in range(7))
    out = SiameseOutput(h, h, z1, z2, p1, p2)
    v = BatchGeometryHook().on_step(_step(Net(4), out))
    loss = simsiam_loss(out, ObjectiveConfig()).item()
    assert v["pz_cosine_train"] == pytest.approx(-loss, rel=1e-6)
    momentum = SiameseOutput(h, h, z1, z2, p1, p2, t1, t2)
    expected = (
        torch.cosine_similarity(p1, t2).mean() + torch.cosine_similarity(p2, t1).mean()
    ).item() / 2
    assert BatchGeometryHook().on_step(_step(Net(4), momentum))["pz_cosine_train"] == (
        pytest.approx(expected, rel=1e-6)
    )


def test_monitor_applies_the_schedules():
    """Step hooks every N steps; epoch hooks every N epochs plus the first and the last."""
    d = 8
    z = torch.randn(64, d, generator=torch.Generator().manual_seed(9))
    emb = _emb(z)
    sink = ListSink()
    hooks = [GradNormHook(step_every=3), EvalStdHook(epoch_every=4)]
    monitor = Monitor(hooks, [sink], lambda: FakeProbes(test=emb))
    net = Net(d)
    out = SiameseOutput(*[z] * 6)
    for step in range(1, 10):
        monitor.on_step_end(_step(net, out, step=step))
    for epoch in range(1, 11):
        monitor.on_epoch_end(EpochView(epoch, 9, 1.0, 64, epoch == 10))
    assert [i for scope, i, v in sink.rows if scope == "step"] == [3, 6, 9]
    assert [i for scope, i, v in sink.rows if scope == "epoch"] == [1, 4, 8, 10]
    assert all("z_std_eval" in v for scope, _, v in sink.rows if scope == "epoch")
