import math

import pytest
import torch

from siamlab.diagnostics.std import centre_ratio, channel_std, mean_channel_std


def _gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_isotropic_gaussian_std_is_one_over_sqrt_d() -> None:
    d = 256
    z = _gaussian(8192, d)
    std = channel_std(z)
    assert std.shape == (d,)
    assert std.dtype == z.dtype
    assert mean_channel_std(z) * math.sqrt(d) == pytest.approx(1.0, abs=0.03)
    # every channel, not just the mean, sits near 1/sqrt(d)
    assert torch.all((std * math.sqrt(d) - 1.0).abs() < 0.1)


def test_isotropic_centre_ratio_is_about_one_over_sqrt_n() -> None:
    n = 4096
    z = _gaussian(n, 128, seed=1)
    assert centre_ratio(z) * math.sqrt(n) == pytest.approx(1.0, abs=0.25)


def test_constant_output_is_complete_collapse() -> None:
    z = torch.randn(1, 64).repeat(500, 1) * 3.0
    assert mean_channel_std(z) == pytest.approx(0.0, abs=1e-12)
    assert centre_ratio(z) == pytest.approx(1.0, abs=1e-12)


def test_std_is_blind_to_dimensional_collapse() -> None:
    # rank-10 data in d = 256 still looks healthy to the std (docs/diagnostics.md#channel-std)
    g = torch.Generator().manual_seed(2)
    d, k = 256, 10
    z = torch.randn(8192, k, generator=g) @ torch.randn(k, d, generator=g)
    assert mean_channel_std(z) * math.sqrt(d) > 0.9


def test_variance_identity_ties_std_to_centre_ratio() -> None:
    # sum_c Var(z'_c) = 1 - ||E z'||^2 exactly for the population variance
    g = torch.Generator().manual_seed(3)
    z = torch.randn(300, 32, generator=g, dtype=torch.float64) + 2.0
    total_var = float((channel_std(z) ** 2).sum())
    assert total_var + centre_ratio(z) ** 2 == pytest.approx(1.0, abs=1e-12)


def test_scale_invariance_and_no_side_effects() -> None:
    z = _gaussian(200, 16, seed=4)
    before = z.clone()
    assert mean_channel_std(z * 7.5) == pytest.approx(mean_channel_std(z), rel=1e-5)
    assert torch.equal(z, before)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        channel_std(torch.randn(4, 5, 6))
    with pytest.raises(ValueError):
        centre_ratio(torch.randn(0, 5))
