import pytest
import torch

from siamlab.diagnostics.predictor_alignment import (
    CorrelationEMA,
    linearise_predictor,
    predictor_alignment,
)


def _correlation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4 * d, d, generator=g, dtype=torch.float64) @ torch.randn(
        d, d, generator=g, dtype=torch.float64
    )
    return z.T @ z / z.shape[0]


def _sqrtm(f: torch.Tensor) -> torch.Tensor:
    s, u = torch.linalg.eigh(f)
    return u @ torch.diag(s.clamp(min=0).sqrt()) @ u.T


def test_function_of_f_is_perfectly_aligned() -> None:
    f = _correlation(32, seed=0)
    w = _sqrtm(f)  # W = F^{1/2}: shares F's eigenvectors, as DirectPred sets it
    out = predictor_alignment(f, w)
    cos = out["cosines"]
    assert isinstance(cos, torch.Tensor) and cos.shape == (32,)
    assert torch.allclose(cos, torch.ones(32, dtype=torch.float64), atol=1e-8)
    assert out["mean_cosine"] == pytest.approx(1.0, abs=1e-8)
    assert out["commutator"] == pytest.approx(0.0, abs=1e-10)
    assert out["asymmetry"] == pytest.approx(0.0, abs=1e-12)
    s = out["correlation_eigenvalues"]
    w_eigs = out["predictor_eigenvalues"]
    assert isinstance(s, torch.Tensor) and isinstance(w_eigs, torch.Tensor)
    assert torch.all(s[:-1] >= s[1:])
    assert torch.allclose(w_eigs, s.clamp(min=0).sqrt(), rtol=1e-8, atol=1e-10)  # eig(W)=sqrt(s)


def test_random_predictor_is_poorly_aligned() -> None:
    f = _correlation(32, seed=1)
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = predictor_alignment(f, w, top=8)
    mean_cos = out["mean_cosine"]
    assert isinstance(mean_cos, float) and mean_cos < 0.5
    aligned = predictor_alignment(f, _sqrtm(f), top=8)["mean_cosine"]
    assert isinstance(aligned, float) and mean_cos < aligned
    assert out["commutator"] > 0.1  # type: ignore[operator]
    assert out["asymmetry"] == pytest.approx(2**0.5, abs=0.2)  # ~sqrt(2) for Gaussian W


def test_correlation_ema_update_rule() -> None:
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g) + 1.0
    ema = CorrelationEMA(rho=0.3)
    with pytest.raises(ValueError):
        _ = ema.value
    ema.update(z1)
    c1 = z1.double().T @ z1.double() / 64  # uncentred
    assert torch.allclose(ema.value, c1)  # first update initialises
    ema.update(z2)
    c2 = z2.double().T @ z2.double() / 64
    assert torch.allclose(ema.value, 0.3 * c1 + 0.7 * c2)
    assert ema.value.dtype == torch.float64 and ema.num_updates == 2
    with pytest.raises(ValueError):
        CorrelationEMA(rho=1.0)


def test_linearise_predictor_recovers_known_affine_map() -> None:
    g = torch.Generator().manual_seed(4)
    n, d = 400, 24
    w_true = torch.randn(d, d, generator=g, dtype=torch.float64)
    bias = torch.randn(d, generator=g, dtype=torch.float64)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    p = z @ w_true.T + bias
    w = linearise_predictor(z, p)
    assert w.shape == (d, d) and w.dtype == torch.float64
    assert torch.allclose(w, w_true, atol=1e-10)
    assert torch.allclose(linearise_predictor(z, z @ w_true.T, bias=False), w_true, atol=1e-10)
    with pytest.raises(ValueError):
        linearise_predictor(z[:d], p[:d])  # fewer samples than unknowns (d + 1)


def test_linearised_predictor_of_aligned_linear_layer() -> None:
    # end to end: a linear predictor built from F's eigenvectors, linearised from probes
    f = _correlation(16, seed=5)
    w = _sqrtm(f)
    z = torch.randn(200, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out = predictor_alignment(f, linearise_predictor(z, z @ w.T))
    assert out["mean_cosine"] == pytest.approx(1.0, abs=1e-8)
