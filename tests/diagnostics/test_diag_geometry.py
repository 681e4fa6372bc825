import math

import pytest
import torch
from scipy.special import gammaln, ive

from siamlab.diagnostics.geometry import alignment, branch_cosine, uniformity


def _direct_uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola's reference formula on normalised rows (O(N^2) pdist)."""
    xn = torch.nn.functional.normalize(x, dim=1)
    return float(torch.pdist(xn, p=2).pow(2).mul(-t).exp().mean().log())


def _sphere_uniformity(d: int, t: float) -> float:
    """Closed form for uniform points on S^{d-1}: ||x-y||^2 = 2 - 2c with
    E exp(s c) = Gamma(nu+1) (2/s)^nu I_nu(s), nu = d/2 - 1, s = 2t."""
    s, nu = 2.0 * t, d / 2.0 - 1.0
    log_mgf = gammaln(nu + 1) + nu * math.log(2 / s) + math.log(ive(nu, s)) + s
    return -2.0 * t + log_mgf


@pytest.mark.parametrize("block_size", [3, 7, 64, 299, 300, 1024])
def test_blocked_uniformity_equals_direct_formula(block_size: int) -> None:
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert uniformity(x, block_size=block_size) == pytest.approx(_direct_uniformity(x), abs=1e-10)


def test_block_size_one_and_two_samples() -> None:
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert uniformity(x, block_size=1) == pytest.approx(_direct_uniformity(x), abs=1e-10)
    assert uniformity(x[:2], block_size=1) == pytest.approx(_direct_uniformity(x[:2]), abs=1e-10)


def test_uniformity_other_temperature_and_float32() -> None:
    x = torch.randn(257, 8, generator=torch.Generator().manual_seed(1))
    assert uniformity(x, t=0.5, block_size=50) == pytest.approx(
        _direct_uniformity(x.double(), t=0.5), abs=1e-5
    )


@pytest.mark.parametrize("d", [16, 128])
def test_isotropic_gaussian_uniformity_matches_sphere_closed_form(d: int) -> None:
    # Normalised Gaussians are uniform on the sphere; the U-statistic's first-order variance
    # vanishes by symmetry, so N = 2000 is already accurate to ~1e-3.
    x = torch.randn(2000, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    closed = _sphere_uniformity(d, 2.0)
    assert closed == pytest.approx(-4.0 + 8.0 / d, abs=0.02)  # large-d approximation
    assert uniformity(x, block_size=512) == pytest.approx(closed, abs=5e-3)


def test_collapsed_output_has_uniformity_zero_and_perfect_alignment() -> None:
    z = torch.randn(1, 32).repeat(100, 1)
    assert uniformity(z) == pytest.approx(0.0, abs=1e-6)
    assert alignment(z, 2 * z) == pytest.approx(0.0, abs=1e-6)
    assert branch_cosine(z, 3 * z) == pytest.approx(1.0, abs=1e-6)


def test_alignment_and_branch_cosine_closed_forms() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 24, generator=g, dtype=torch.float64)
    assert alignment(x, -x) == pytest.approx(4.0, abs=1e-12)  # antipodal: ||2u||^2
    assert alignment(x, -x, alpha=1) == pytest.approx(2.0, abs=1e-12)
    assert branch_cosine(x, -x) == pytest.approx(-1.0, abs=1e-12)
    y = torch.randn(500, 24, generator=g, dtype=torch.float64)
    # for unit vectors ||u - v||^2 = 2 - 2 cos
    assert alignment(x, y) == pytest.approx(2 - 2 * branch_cosine(x, y), abs=1e-12)
    assert abs(branch_cosine(x, y)) < 0.05  # independent directions


def test_errors() -> None:
    with pytest.raises(ValueError):
        uniformity(torch.randn(1, 4))
    with pytest.raises(ValueError):
        alignment(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError):
        branch_cosine(torch.randn(3), torch.randn(3))
