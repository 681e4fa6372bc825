import math

import pytest
import torch

from siamlab.diagnostics.rank import alpha_req, effective_rank, rankme
from siamlab.diagnostics.spectrum import CovarianceAccumulator, covariance_spectrum


def _singular_values(z: torch.Tensor) -> torch.Tensor:
    acc = CovarianceAccumulator()
    acc.update(z)
    return acc.singular_values()


def test_isotropic_gaussian_rank_is_close_to_d() -> None:
    d = 128
    z = torch.randn(8192, d, generator=torch.Generator().manual_seed(0))
    s = _singular_values(z)
    assert 0.97 * d < rankme(s) <= d
    assert 0.97 * d < effective_rank(s) <= d
    assert rankme(s) > effective_rank(s)  # eps only adds entropy


def test_rank_k_data_gives_rank_about_k() -> None:
    g = torch.Generator().manual_seed(1)
    k, d = 5, 128
    z = torch.randn(8192, k, generator=g) @ torch.linalg.qr(torch.randn(d, k, generator=g))[0].T
    s = _singular_values(z)
    assert rankme(s) == pytest.approx(k, rel=0.02)
    assert effective_rank(s) == pytest.approx(k, rel=0.02)


def test_constant_output_gives_rankme_one_plus_eps_term() -> None:
    d = 2048
    s = torch.zeros(d, dtype=torch.float64)
    s[0] = 3.0
    # closed form: p_1 = 1 + eps, others eps -> exp((d-1) eps ln(1/eps) - ...) ~ 1.0033
    eps = 1e-7
    expected = math.exp(-((1 + eps) * math.log(1 + eps) + (d - 1) * eps * math.log(eps)))
    assert rankme(s) == pytest.approx(expected, rel=1e-9)
    assert rankme(s) == pytest.approx(1.0033, abs=5e-4)
    assert rankme(s, eps=1e-5) == pytest.approx(1.266, abs=5e-3)  # eps matters
    assert effective_rank(s) == pytest.approx(1.0, abs=1e-12)
    # the same from an actual constant embedding matrix (rounding leaves ~1e-8 noise)
    z = torch.randn(1, 64, generator=torch.Generator().manual_seed(2)).repeat(1000, 1)
    assert rankme(_singular_values(z)) == pytest.approx(1.0, abs=2e-3)


def test_equal_singular_values_give_exact_rank() -> None:
    s = torch.tensor([2.0, 2.0, 2.0, 0.0, 0.0])
    assert effective_rank(s) == pytest.approx(3.0, abs=1e-12)
    assert rankme(s) == pytest.approx(3.0, abs=1e-4)
    assert rankme(torch.zeros(4)) == 0.0
    assert effective_rank(torch.zeros(4)) == 0.0
    with pytest.raises(ValueError, match="1-D"):
        rankme(torch.randn(10, 3))


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_alpha_req_recovers_power_law_from_data(alpha: float) -> None:
    g = torch.Generator().manual_seed(3)
    n, d = 20000, 256
    lam = torch.arange(1, d + 1, dtype=torch.float64) ** (-alpha)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    z = (torch.randn(n, d, generator=g, dtype=torch.float64) * lam.sqrt()) @ q.T
    fit_alpha, r2 = alpha_req(covariance_spectrum(z))
    assert fit_alpha == pytest.approx(alpha, abs=0.05)
    assert r2 > 0.99


def test_alpha_req_exact_on_exact_power_law_and_scale_invariant() -> None:
    lam = torch.arange(1, 301, dtype=torch.float64) ** -1.2
    a, r2 = alpha_req(lam)
    assert a == pytest.approx(1.2, abs=1e-10)
    assert r2 == pytest.approx(1.0, abs=1e-10)
    assert alpha_req(lam * 1e-6)[0] == pytest.approx(1.2, abs=1e-10)
    assert alpha_req(lam.flip(0))[0] == pytest.approx(1.2, abs=1e-10)  # sorted inside
    assert alpha_req(lam, fit_range=(10, 100))[0] == pytest.approx(1.2, abs=1e-10)
    flat = alpha_req(torch.ones(50))
    assert flat == (pytest.approx(0.0, abs=1e-12), 1.0)


def test_alpha_req_zero_tail_and_short_spectra() -> None:
    lam = torch.arange(1, 129, dtype=torch.float64) ** -1.0
    lam[20:] = 0.0  # collapsed tail inside the fit range: clamped, shows as steep poor fit
    a, r2 = alpha_req(lam)
    assert math.isfinite(a) and a > 5.0
    assert r2 < 0.9
    short = torch.arange(1, 41, dtype=torch.float64) ** -1.0  # range clipped to 3..39
    assert alpha_req(short)[0] == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(ValueError):
        alpha_req(torch.ones(4))  # a single point left in 3..3
    assert all(math.isnan(v) for v in alpha_req(torch.zeros(10)))
