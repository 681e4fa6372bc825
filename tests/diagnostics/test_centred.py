"""Centred geometry of z/|z| (Zhang et al. 2022): closed forms, and the epoch hook."""

import math

import pytest
import torch

from siamlab.diagnostics import centred
from siamlab.diagnostics.centred import centred_geometry
from siamlab.diagnostics.centred_hook import BRANCHES, MEASURES, CentredGeometryHook
from siamlab.diagnostics.config import DiagnosticsConfig, VerdictConfig
from siamlab.diagnostics.hooks import HookContext
from siamlab.diagnostics.probe import ProbeEmbeddings
from siamlab.diagnostics.verdict_rule import EpochSignals, judge_epoch
from siamlab.train.views import EpochView

N, D = 4096, 64


def _gauss(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _offset_cloud(c: float, seed: int = 0) -> torch.Tensor:
    """An isotropic N(0, I) cloud plus an offset of norm c sqrt(d) along a random direction."""
    u = _gauss(1, D, seed + 100)[0]
    return _gauss(N, D, seed) + c * math.sqrt(D) * u / u.norm()


def test_an_offset_over_an_isotropic_cloud_keeps_an_isotropic_full_rank_residual():
    x = _offset_cloud(3.0)  # |z| ~ sqrt(10 d): centre ~ 3/sqrt(10), residual ~ 1/sqrt(10)
    geo = centred_geometry(x)
    mean = torch.nn.functional.normalize(x, dim=1).mean(dim=0)  # E[z/|z|]
    assert geo.centre_norm == pytest.approx(float(mean.norm()), rel=1e-12)
    assert geo.centre_norm == pytest.approx(3 / math.sqrt(10), abs=0.01)
    assert geo.residual_norm == pytest.approx(1 / math.sqrt(10), abs=0.01)  # 0.32
    assert geo.residual_std_sqrt_d == pytest.approx(1.0, abs=0.03)  # whatever the offset
    assert geo.residual_erank_fraction > 0.95
    assert geo.residual_uniformity == pytest.approx(-4 + 8 / D, abs=0.1)  # isotropic, ~-4
    # the uncentred channel std of z/|z| looks collapsed-ish; the verdict reads the residual
    uncentred = float(torch.nn.functional.normalize(x, dim=1).std(dim=0).mean()) * math.sqrt(D)
    assert uncentred == pytest.approx(1 / math.sqrt(10), abs=0.02)
    signals = EpochSignals(
        epoch=10,
        loss=-0.9,
        start_loss=-0.1,
        earlier_loss=-0.89,
        residual_norm=geo.residual_norm,
        residual_erank_fraction=geo.residual_erank_fraction,
        jitter=0.01,
        noise=0.01,
    )
    assert judge_epoch(VerdictConfig(), signals)[0] == "healthy"


def test_no_offset_gives_a_centre_of_order_one_over_sqrt_n():
    geo = centred_geometry(_gauss(N, D, 1))
    assert geo.centre_norm == pytest.approx(1 / math.sqrt(N), rel=0.2)
    assert geo.residual_norm == pytest.approx(1.0, abs=1e-3)
    assert geo.residual_std_sqrt_d == pytest.approx(1.0, abs=0.03)


def test_identical_points_have_no_residual():
    row = _gauss(1, D, 2)
    geo = centred_geometry(row.repeat(100, 1))
    assert geo.centre_norm == pytest.approx(1.0)
    assert geo.residual_norm == pytest.approx(0.0, abs=1e-12)  # 0 up to rounding of the mean
    assert geo.residual_std_sqrt_d == 0.0
    assert (geo.residual_erank_fraction, geo.residual_uniformity) == (0.0, 0.0)
    # nearly identical: the residual's norm is ~0 and its shape is noise (full rank),
    # which is why the verdict reads the norm first
    near = centred_geometry(row.repeat(N, 1) + 1e-7 * _gauss(N, D, 3))
    assert near.residual_norm < 1e-6 and near.residual_erank_fraction > 0.9


def test_residual_norm_is_sqrt_one_minus_centre_norm_squared():
    for seed, c in enumerate((0.0, 0.5, 1.0, 3.0, 10.0)):
        x = _offset_cloud(c, seed) * torch.linspace(0.1, 3.0, D, dtype=torch.float64)
        geo = centred_geometry(x)  # anisotropic, any offset
        assert geo.residual_norm == pytest.approx(math.sqrt(1 - geo.centre_norm**2), rel=1e-9)


def test_a_k_dimensional_residual_has_erank_fraction_k_over_d():
    k = 8
    x = torch.zeros(N, D, dtype=torch.float64)
    x[:, :k] = _gauss(N, k, 4)  # isotropic in k of the d channels
    geo = centred_geometry(x)
    assert geo.residual_erank_fraction == pytest.approx(k / D, rel=0.03)
    x[:, :k] += 2.0 * math.sqrt(k) * torch.eye(k, dtype=torch.float64)[0]  # offset inside
    assert centred_geometry(x).residual_erank_fraction == pytest.approx(k / D, rel=0.05)
    # two antipodal points: centre 0, residual norm 1, one direction of min(d, N) = 2
    pair = torch.zeros(2, D, dtype=torch.float64)
    pair[0, 0], pair[1, 0] = 1.0, -1.0
    geo = centred_geometry(pair)
    assert (geo.centre_norm, geo.residual_norm, geo.residual_erank_fraction) == (0.0, 1.0, 0.5)
    assert geo.residual_std_sqrt_d == pytest.approx(1 / math.sqrt(D))  # one channel of std 1
    assert geo.residual_uniformity == pytest.approx(-8.0)  # log exp(-2 * |2 e1|^2)


def test_chunks_scale_and_dtype_do_not_matter(monkeypatch):
    x = _offset_cloud(1.0, 5)[:1000] * torch.linspace(0.5, 2.0, D, dtype=torch.float64)
    one = centred_geometry(x)
    monkeypatch.setattr(centred, "CHUNK", 64)
    chunked = centred_geometry(x)
    for name in ("centre_norm", "residual_norm", "residual_std_sqrt_d", "residual_erank_fraction"):
        assert getattr(chunked, name) == pytest.approx(getattr(one, name), rel=1e-10), name
    assert chunked.residual_uniformity == pytest.approx(one.residual_uniformity, rel=1e-6)
    assert centred_geometry(7.0 * x.float()).residual_norm == pytest.approx(
        one.residual_norm, rel=1e-5
    )
    with pytest.raises(ValueError):
        centred_geometry(x[:1])
    with pytest.raises(ValueError):
        centred_geometry(x[0])


class FakeProbes:
    """A ProbeCache stand-in serving fixed test-split embeddings."""

    def __init__(self, test: ProbeEmbeddings) -> None:
        self.test, self.device = test, torch.device("cpu")

    def get(self, name: str) -> ProbeEmbeddings:
        assert name == "test"  # the hook reads the held-out split
        return self.test


def test_the_hook_records_each_branch_and_skips_a_blown_up_one():
    z, h = _offset_cloud(3.0, 6)[:512].float(), _gauss(512, 16, 7).float()
    p = z.clone()
    p[3, 0] = math.inf
    view = EpochView(1, 10, 1.0, 100, True)
    out = CentredGeometryHook(uniformity_samples=256).on_epoch(
        view, FakeProbes(ProbeEmbeddings(h, z, p, torch.zeros(512).long()))
    )
    assert set(out) == {f"{x}_{name}" for x in ("z", "h") for name, _ in MEASURES}
    geo = centred_geometry(z, uniformity_samples=256)
    assert out["z_residual_norm"] == geo.residual_norm and out["z_centre_norm"] == geo.centre_norm
    assert out["z_residual_std"] == geo.residual_std_sqrt_d  # already times sqrt(d)
    assert out["h_residual_norm"] == pytest.approx(1.0, abs=0.01)  # no offset
    names = {v.name for v in CentredGeometryHook.variables}
    assert names == {f"{x}_{name}" for x in BRANCHES for name, _ in MEASURES}
    ctx = HookContext(DiagnosticsConfig(eval_every_epochs=5, uniformity_samples=64), 100, 2, 0, 1)
    built = CentredGeometryHook.build(ctx)
    assert (built.epoch_every, built.uniformity_samples) == (5, 64)


def test_uniformity_samples_rows_from_every_class_of_a_class_sorted_split():
    """An image folder's split is sorted by class: its first rows are its first classes."""
    from siamlab.diagnostics.geometry import uniformity
    from siamlab.diagnostics.spectrum_hook import SpectrumHook
    from tests.diagnostics.test_diag_hooks import FakeProbes, _emb

    classes, per, k = 16, 256, 512
    centres = _gauss(classes, D, 5)
    x = (centres.repeat_interleave(per, 0) + 0.3 * _gauss(classes * per, D, 6)).float()  # sorted
    whole = uniformity(x)  # all 4,096 rows
    first = uniformity(x[:k])  # two classes only
    assert abs(first - whole) > 1.0  # the bias a prefix would have
    spectrum = SpectrumHook(uniformity_samples=k).on_epoch(
        EpochView(1, 10, 1.0, 100, True), FakeProbes(probe=_emb(x))
    )
    assert spectrum["z_uniformity"] == pytest.approx(whole, abs=0.1)
    shuffled = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))]
    sorted_geo, shuffled_geo = centred_geometry(x, k), centred_geometry(shuffled, len(x))
    assert sorted_geo.residual_uniformity == pytest.approx(
        shuffled_geo.residual_uniformity, abs=0.1
    )
    assert centred_geometry(x, len(x)) == centred_geometry(x, 10 * len(x))  # all rows: one value
