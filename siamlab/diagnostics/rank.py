"""Rank-type summaries of an embedding spectrum: RankMe, effective rank and alpha-ReQ.

Pinned definitions (public implementations disagree; compare runs of one method only):

* **RankMe** (Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained
  Self-Supervised Representations by Their Rank", ICML 2023) takes the singular values
  ``sigma_k`` of the *raw, uncentred* ``N x D`` embedding matrix -- not centred, not squared
  (i.e. not covariance eigenvalues) -- and returns ``exp(-sum p_k ln p_k)`` with
  ``p_k = sigma_k / ||sigma||_1 + eps``. The ``eps`` matters: a rank-1 input gives about
  ``1.003`` at ``D = 2048`` with ``eps = 1e-7`` but ``1.27`` with ``eps = 1e-5``. Garrido et al.
  recommend at least 25,600 samples.
* **Effective rank** (Roy & Vetterli, "The effective rank: a measure of effective
  dimensionality", EUSIPCO 2007) is the same entropy without ``eps``; zero singular values
  contribute nothing (``0 ln 0 = 0``).
* **alpha-ReQ** (Agrawal et al., "alpha-ReQ: Assessing Representation Quality in
  Self-Supervised Learning by measuring eigenspectrum decay", NeurIPS 2022) fits
  ``lambda_i ~ i^(-alpha)`` to the *centred covariance eigenvalues*.

Use :class:`siamlab.diagnostics.spectrum.CovarianceAccumulator` to obtain the inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Relative floor for zero eigenvalues in the alpha-ReQ fit: log(lambda_max * 1e-30).
_ALPHA_FLOOR = 1e-30


def _spectrum_1d(values: Tensor, name: str) -> Tensor:
    """Validate a 1-D spectrum and return it as a detached float64 tensor clamped at zero.

    Args:
        values: Tensor of shape ``(K,)``.
        name: Name of the argument, for error messages.

    Returns:
        Float64 tensor of shape ``(K,)`` with negative entries (rounding noise) set to ``0``.

    Raises:
        ValueError: If ``values`` is not 1-D or is empty.

    """
    if values.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D, got shape {tuple(values.shape)}; pass a spectrum "
            "(e.g. CovarianceAccumulator.singular_values()), not the embedding matrix"
        )
    if values.numel() == 0:
        raise ValueError(f"`{name}` is empty")
    return values.detach().to(torch.float64).clamp(min=0.0)


def rankme(singular_values: Tensor, eps: float = 1e-7) -> float:
    """RankMe, the smooth rank of an embedding matrix (Garrido et al., ICML 2023).

    ``p_k = sigma_k / ||sigma||_1 + eps`` and ``RankMe = exp(-sum_k p_k ln p_k)``, where
    ``sigma`` are the singular values of the raw, uncentred embedding matrix (not squared).
    It is about ``D`` for isotropic Gaussian embeddings with ``N >> D`` and about ``1`` for a
    constant output (``1 + ~(D - 1) eps ln(1/eps)`` because of ``eps``).

    Args:
        singular_values: Singular values of the ``N x D`` embedding matrix, shape ``(K,)``.
        eps: Smoothing constant of the reference implementation.

    Returns:
        The RankMe value; ``0.0`` if all singular values are zero (zero matrix).

    Raises:
        ValueError: If ``singular_values`` is not a non-empty 1-D tensor.
    """
    return _entropy_rank(singular_values, eps)


def effective_rank(singular_values: Tensor) -> float:
    """Effective rank (Roy & Vetterli, EUSIPCO 2007): RankMe without ``eps``.

    ``p_k = sigma_k / ||sigma||_1`` and ``erank = exp(-sum_k p_k ln p_k)`` with ``0 ln 0 = 0``,
    so a rank-k matrix with equal singular values gives exactly ``k``.

    Args:
        singular_values: Singular values, shape ``(K,)``.

    Returns:
        The effective rank, in ``[1, K]``; ``0.0`` if all singular values are zero.

    Raises:
        ValueError: If ``singular_values`` is not a non-empty 1-D tensor.
    """
    return _entropy_rank(singular_values, None)


def _entropy_rank(singular_values: Tensor, eps: float | None) -> float:
    """Exp of the entropy of the normalised spectrum, smoothed by ``eps`` (RankMe) or not."""
    s = _spectrum_1d(singular_values, "singular_values")  # (K,)
    total = s.sum()
    if total <= 0:
        return 0.0
    if eps is None:  # 0 ln 0 = 0
        p = s / total  # (K,)
        return float(torch.exp(-torch.xlogy(p, p).sum()).item())
    p = s / total + eps  # (K,)
    return float(torch.exp(-(p * p.log()).sum()).item())


def alpha_req(eigenvalues: Tensor, fit_range: tuple[int, int] = (3, 100)) -> tuple[float, float]:
    """Power-law decay exponent of a covariance spectrum (alpha-ReQ, Agrawal et al. 2022).

    Fits ``log lambda_i = c + alpha * (-log i)`` by weighted least squares with weights
    ``1/i``, where ``i`` is the 1-based rank, over the 0-based index range
    ``[fit_range[0], fit_range[1])`` -- the reference code uses indices 3..99, i.e. ranks
    4..100 (the fit of Stringer et al., Nature 2019). Healthy representations give
    ``alpha`` around 0.8-1.2 with a good fit; collapse shows a steep ``alpha`` and poor fit.
    Keep the range away from the noise-floor tail.

    Details:
        * The eigenvalues are sorted descending first.
        * Zero (or negative, from rounding) eigenvalues are clamped to the floor
          ``1e-30 * max(lambda)`` before the log; the fit stays scale invariant and a
          collapsed tail shows up as a very steep ``alpha`` and low ``R^2``.
        * The range is clipped to the number of eigenvalues; at least two points must remain.
        * ``R^2`` is the weighted coefficient of determination of the same fit
          (``1 - sum w r^2 / sum w (y - y_w)^2``); a perfectly flat spectrum gives ``1``.

    Args:
        eigenvalues: Centred covariance eigenvalues, shape ``(K,)``.
        fit_range: Half-open 0-based index range ``(start, stop)`` used for the fit.

    Returns:
        ``(alpha, r2)``; ``(nan, nan)`` if all eigenvalues are zero.

    Raises:
        ValueError: If the input is not a non-empty 1-D tensor, or if fewer than two points
            fall in the clipped range.

    """
    lam = _spectrum_1d(eigenvalues, "eigenvalues").sort(descending=True).values  # (K,)
    start, stop = max(int(fit_range[0]), 0), min(int(fit_range[1]), lam.numel())
    if stop - start < 2:
        raise ValueError(
            f"fit_range {fit_range} leaves {max(stop - start, 0)} point(s) for "
            f"{lam.numel()} eigenvalues; need at least 2"
        )
    top = float(lam[0].item())
    if top <= 0:
        return math.nan, math.nan
    idx = torch.arange(start, stop, dtype=torch.float64, device=lam.device)  # (M,)
    rank = idx + 1.0  # 1-based
    x = -rank.log()  # (M,)
    y = lam[start:stop].clamp(min=top * _ALPHA_FLOOR).log()  # (M,)
    w = 1.0 / rank  # (M,)
    w = w / w.sum()
    x_bar, y_bar = (w * x).sum(), (w * y).sum()
    sxx = (w * (x - x_bar) ** 2).sum()
    sxy = (w * (x - x_bar) * (y - y_bar)).sum()
    alpha = sxy / sxx
    resid = y - (y_bar + alpha * (x - x_bar))  # (M,)
    ss_res = (w * resid**2).sum()
    ss_tot = (w * (y - y_bar) ** 2).sum()
    flat = float(ss_tot) <= 1e-24 * max(1.0, float((w * y**2).sum()))  # constant up to rounding
    r2 = 1.0 if flat else float((1.0 - ss_res / ss_tot).item())
    return float(alpha.item()), r2
