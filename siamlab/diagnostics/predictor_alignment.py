"""Alignment of the predictor with the feature correlation matrix (DirectPred).

Tian, Chen & Ganguli, "Understanding Self-supervised Learning Dynamics without Contrastive
Pairs", ICML 2021, show that in non-contrastive training the linear predictor ``W_p`` and the
correlation matrix ``F = E[z z^T]`` of the projections come to share eigenvectors: with
``F = U diag(s) U^T`` the cosines ``c_j = cos(u_j, W_p u_j)`` go to ``1`` and the eigenvalues
of ``W_p`` stay positive, whereas collapse drives ``eig(W_p)`` to ``0``.

* :class:`CorrelationEMA` keeps ``F`` as in the reference code:
  ``F <- rho F + (1 - rho) mean(z z^T)`` (uncentred, detached, ``rho = 0.3``).
* :func:`linearise_predictor` gives the least-squares linear map ``p ~ W z (+ b)`` of an MLP
  predictor over a probe set.
* :func:`predictor_alignment` returns the per-eigenvector cosines, ``eig(W_p)``, the asymmetry
  ``||W - W^T|| / ||W||`` and the basis-free commutator ``||F W - W F||_F / (||F|| ||W||)``.

DirectPred itself sets ``W_p = U diag(p_j) U^T`` with ``p_j = sqrt(max(s_j, 0) / s_max) + eps``,
which is a function of ``F`` and so has cosines ``1`` and commutator ``0``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class CorrelationEMA:
    """Exponential moving average of the uncentred correlation ``E[z z^T]`` (DirectPred).

    Tian et al. (ICML 2021): ``F <- rho F + (1 - rho) z^T z / N``; the first update sets
    ``F = z^T z / N``. To use both views, call :meth:`update` on ``torch.cat([z1, z2])``.
    The running matrix is kept in float64 on the device of the first batch.

    Args:
        rho: Decay of the average, in ``[0, 1)`` (0.3 in the reference command).

    """

    def __init__(self, rho: float = 0.3) -> None:
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must lie in [0, 1), got {rho}")
        self.rho = rho
        self._value: Tensor | None = None  # (D, D) float64
        self.num_updates = 0

    def update(self, z: Tensor) -> None:
        """Blend the correlation of one batch into the average.

        Args:
            z: Projections of shape ``(N, D)``; detached and cast to float64.

        Raises:
            ValueError: If ``z`` is not a non-empty 2-D tensor or its ``D`` changed.

        """
        if z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, D) batch, got shape {tuple(z.shape)}")
        z64 = z.detach().to(torch.float64)  # (N, D)
        corr = z64.T @ z64 / z64.shape[0]  # (D, D)
        if self._value is None:
            self._value = corr
        else:
            if corr.shape != self._value.shape:
                raise ValueError(f"expected D = {self._value.shape[0]}, got D = {z.shape[1]}")
            self._value = self.rho * self._value + (1.0 - self.rho) * corr.to(self._value.device)
        self.num_updates += 1

    @property
    def value(self) -> Tensor:
        """The current average ``F``, float64, shape ``(D, D)``.

        Raises:
            ValueError: If :meth:`update` was never called.

        """
        if self._value is None:
            raise ValueError("CorrelationEMA has no value yet: call update() first")
        return self._value


def linearise_predictor(z: Tensor, p: Tensor, bias: bool = True) -> Tensor:
    """Least-squares linearisation ``p ~ z W^T (+ b)`` of a predictor over a probe set.

    Solves ``min_{W, b} ||[z, 1] [W^T; b] - p||_F`` with ``torch.linalg.lstsq`` in float64,
    the "linearised W_p" used to apply DirectPred's analysis (Tian et al., ICML 2021) to an
    MLP predictor. Noise-free linear data are recovered exactly.

    Args:
        z: Predictor inputs (projections), shape ``(N, D_in)``.
        p: Predictor outputs, shape ``(N, D_out)``.
        bias: Fit an intercept column as well (it is not returned).

    Returns:
        ``W`` of shape ``(D_out, D_in)``, float64.

    Raises:
        ValueError: If the shapes mismatch or there are fewer samples than unknowns
            (``N < D_in + bias``), which would make ``W`` unidentifiable.

    """
    if z.ndim != 2 or p.ndim != 2 or z.shape[0] != p.shape[0]:
        raise ValueError(f"expected z (N, D) and p (N, D'), got {tuple(z.shape)}, {tuple(p.shape)}")
    n, d_in = z.shape
    if n < d_in + int(bias):
        raise ValueError(f"need at least {d_in + int(bias)} probe samples, got N = {n}")
    a = z.detach().to(torch.float64)  # (N, D_in)
    if bias:
        a = torch.cat([a, a.new_ones(n, 1)], dim=1)  # (N, D_in + 1)
    b = p.detach().to(device=a.device, dtype=torch.float64)  # (N, D_out)
    sol = torch.linalg.lstsq(a, b).solution  # (D_in [+1], D_out)
    return sol[:d_in].T.contiguous()  # (D_out, D_in)


def predictor_alignment(F: Tensor, W: Tensor, top: int | None = None) -> dict[str, float | Tensor]:
    """Eigenspace alignment between a correlation matrix ``F`` and a predictor ``W``.

    Tian et al. (ICML 2021), DirectPred: with ``F = U diag(s) U^T`` (``eigh``, descending),
    ``c_j = cos(u_j, W u_j)`` for each eigenvector (sign-invariant; ``0`` where ``W u_j = 0``).

    Args:
        F: Symmetric correlation matrix, shape ``(D, D)`` (e.g. ``CorrelationEMA.value``).
        W: Linear (or linearised) predictor, shape ``(D, D)``.
        top: Number of leading eigenvectors averaged into ``mean_cosine``; ``None`` = all.

    Returns:
        A dict with float64 tensors and floats:

        * ``"cosines"``: ``c_j`` per eigenvector, shape ``(D,)``, descending ``s_j`` order;
        * ``"mean_cosine"``: mean of the first ``top`` cosines;
        * ``"correlation_eigenvalues"``: ``s``, descending, shape ``(D,)``;
        * ``"predictor_eigenvalues"``: real parts of ``eig(W)``, descending, shape ``(D,)``;
        * ``"asymmetry"``: ``||W - W^T||_F / ||W||_F``;
        * ``"commutator"``: ``||F W - W F||_F / (||F||_F ||W||_F)`` (basis-free; ``0`` iff
          ``F`` and ``W`` commute).

    Raises:
        ValueError: If the shapes are not matching square matrices or ``top < 1``.

    """
    if F.ndim != 2 or F.shape[0] != F.shape[1] or W.shape != F.shape:
        raise ValueError(f"expected two (D, D) matrices, got {tuple(F.shape)}, {tuple(W.shape)}")
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1 or None, got {top}")
    f64 = F.detach().to(torch.float64)  # (D, D)
    f64 = 0.5 * (f64 + f64.T)
    w64 = W.detach().to(device=f64.device, dtype=torch.float64)  # (D, D)
    evals, evecs = torch.linalg.eigh(f64)  # (D,), (D, D) ascending
    evals, evecs = evals.flip(0), evecs.flip(1)  # descending
    wu = w64 @ evecs  # (D, D), column j = W u_j
    wu_norm = torch.linalg.vector_norm(wu, dim=0)  # (D,)
    dots = (evecs * wu).sum(dim=0)  # (D,), u_j has unit norm
    tiny = torch.finfo(torch.float64).tiny
    cosines = torch.where(wu_norm > tiny, dots / wu_norm.clamp(min=tiny), torch.zeros_like(dots))
    k = cosines.numel() if top is None else min(top, cosines.numel())
    w_eigs = torch.linalg.eigvals(w64).real.sort(descending=True).values  # (D,)
    w_norm = torch.linalg.matrix_norm(w64)
    f_norm = torch.linalg.matrix_norm(f64)
    asym = torch.linalg.matrix_norm(w64 - w64.T) / w_norm if w_norm > 0 else w_norm
    comm_den = f_norm * w_norm
    comm = torch.linalg.matrix_norm(f64 @ w64 - w64 @ f64) / comm_den if comm_den > 0 else comm_den
    return {
        "cosines": cosines,
        "mean_cosine": float(cosines[:k].mean().item()),
        "correlation_eigenvalues": evals,
        "predictor_eigenvalues": w_eigs,
        "asymmetry": float(asym.item()),
        "commutator": float(comm.item()),
    }
