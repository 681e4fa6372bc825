import pytest
import torch

from siamlab.diagnostics.spectrum import CovarianceAccumulator, covariance_spectrum


def _data(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) + 0.5


def test_moments_match_direct_formulas() -> None:
    z = _data(500, 32).double()
    acc = CovarianceAccumulator()
    acc.update(z)
    assert acc.count == 500
    assert torch.allclose(acc.mean(), z.mean(0), atol=1e-12)
    assert torch.allclose(acc.covariance(), torch.cov(z.T, correction=0), atol=1e-10)
    assert torch.allclose(acc.second_moment(), z.T @ z / 500, atol=1e-10)
    eig = acc.eigenvalues()
    assert eig.dtype == torch.float64
    assert torch.all(eig[:-1] >= eig[1:])  # descending
    assert torch.all(eig >= 0)
    ref = torch.linalg.eigvalsh(torch.cov(z.T, correction=0)).flip(0)
    assert torch.allclose(eig, ref.clamp(min=0), rtol=1e-9, atol=1e-10)
    assert torch.allclose(covariance_spectrum(z), eig, atol=1e-10)


def test_singular_values_are_those_of_raw_uncentred_matrix() -> None:
    z = _data(400, 24, seed=1).double()
    acc = CovarianceAccumulator()
    acc.update(z)
    ref = torch.linalg.svdvals(z)  # (24,) descending, uncentred, no 1/N
    assert torch.allclose(acc.singular_values(), ref, rtol=1e-9)
    assert torch.allclose(acc.eigenvalues(centred=False), ref**2 / 400, rtol=1e-9)


def test_normalize_option_matches_normalised_rows() -> None:
    z = _data(300, 16, seed=2).double()
    zn = z / z.norm(dim=1, keepdim=True)
    assert torch.allclose(
        covariance_spectrum(z, normalize=True), covariance_spectrum(zn), atol=1e-12
    )


def test_streaming_over_chunks_equals_one_pass() -> None:
    z = _data(1000, 48, seed=3)
    one = CovarianceAccumulator(normalize=True)
    one.update(z)
    streamed = CovarianceAccumulator(normalize=True)
    for chunk in z.split(77):
        streamed.update(chunk)
    assert streamed.count == one.count == 1000
    assert torch.allclose(streamed.covariance(), one.covariance(), rtol=0, atol=1e-10)
    assert torch.allclose(streamed.second_moment(), one.second_moment(), rtol=0, atol=1e-10)
    assert torch.allclose(streamed.eigenvalues(), one.eigenvalues(), rtol=0, atol=1e-10)


def test_merge_of_shards_equals_one_pass() -> None:
    z = _data(900, 20, seed=4)
    one = CovarianceAccumulator()
    one.update(z)
    a, b = CovarianceAccumulator(), CovarianceAccumulator()
    a.update(z[:250])
    b.update(z[250:600])
    b.update(z[600:])
    merged = a.merge(b)
    assert merged is a and merged.count == 900
    assert torch.allclose(merged.mean(), one.mean(), rtol=0, atol=1e-10)
    assert torch.allclose(merged.covariance(), one.covariance(), rtol=0, atol=1e-10)
    empty = CovarianceAccumulator()
    assert empty.merge(one).count == 900  # merging into an empty accumulator copies
    with pytest.raises(ValueError):
        CovarianceAccumulator(normalize=True).merge(one)


def test_rank_k_data_has_exactly_k_nonzero_eigenvalues() -> None:
    g = torch.Generator().manual_seed(5)
    n, d, k = 4000, 128, 7
    z = torch.randn(n, k, generator=g) @ torch.randn(k, d, generator=g)  # float32, rank k
    acc = CovarianceAccumulator()
    acc.update(z)
    for centred in (True, False):
        eig = acc.eigenvalues(centred=centred)
        assert int((eig > 1e-10 * eig[0]).sum()) == k


def test_float64_accumulation_resolves_a_tiny_eigenvalue_float32_cannot() -> None:
    # Construction: Gaussian data whose covariance has eigenvalues logspace(1, 1e-3) plus one
    # direction of variance 1e-12, rotated by a random orthogonal matrix (so no axis is
    # special) and stored as float32, as a network would emit it. The reference is the
    # two-pass float64 covariance of those float32 values. The float64 accumulator recovers
    # the tiny eigenvalue to ~1e-4 relative; the naive float32 covariance + eigvalsh gives
    # rounding noise ~1e-8 (docs/diagnostics.md#covariance-spectrum: 1e-12 gave 6.6e-9): the tail
    # looks flat and would hide a collapsed direction.
    g = torch.Generator().manual_seed(6)
    n, d = 4096, 64
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.logspace(0, -3, d, dtype=torch.float64)
    lam[-1] = 1e-12
    z32 = ((torch.randn(n, d, generator=g, dtype=torch.float64) * lam.sqrt()) @ q.T).float()
    ref = torch.linalg.eigvalsh(torch.cov(z32.double().T, correction=0))[0]
    assert 5e-13 < ref < 2e-12

    acc = CovarianceAccumulator()
    for chunk in z32.split(512):
        acc.update(chunk)
    tiny64 = acc.eigenvalues()[-1]
    assert tiny64 == pytest.approx(float(ref), rel=1e-2)

    zc = z32 - z32.mean(0)
    naive32 = torch.linalg.eigvalsh(zc.T @ zc / n)[0]  # float32 throughout
    assert abs(float(naive32) - float(ref)) > 100 * float(ref)


def test_errors() -> None:
    acc = CovarianceAccumulator()
    with pytest.raises(ValueError):
        acc.mean()
    acc.update(torch.randn(10, 4))
    with pytest.raises(ValueError):
        acc.update(torch.randn(10, 5))
    with pytest.raises(ValueError):
        acc.update(torch.randn(10))
