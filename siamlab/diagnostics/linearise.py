"""Streamed least-squares linearisation of a predictor, ``p ~ W z + b``.

DirectPred's analysis (Tian, Chen & Ganguli, "Understanding Self-supervised Learning
Dynamics without Contrastive Pairs", ICML 2021) is stated for a linear predictor ``W_p``;
for an MLP predictor siamlab uses its least-squares linearisation over the probe set
(docs/diagnostics.md#predictor-alignment). :func:`~.predictor_alignment.linearise_predictor`
solves the ``N x (D+1)`` problem with a QR/SVD; at ``N = 8192, D = 2048`` that takes tens of
seconds on a CPU. This module accumulates the normal equations instead,

    G = sum_i a_i a_i^T,   C = sum_i a_i p_i^T,   a_i = [z_i, 1],

in float64 while streaming (so chunks give the same answer as one pass), and solves
``(G + r I) [W^T; b] = C`` by Cholesky with a tiny ridge ``r = 1e-12 tr(G) / (D+1)`` that only
matters when ``z`` is rank deficient (a collapsed encoder). Cost: one ``N D^2`` product and
one ``D^3/3`` factorisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

RIDGE = 1e-12


class LeastSquaresAccumulator:
    """Normal equations of ``p ~ W z + b`` accumulated in float64.

    Feed matching batches with :meth:`update`, then call :meth:`solve`.
    """

    def __init__(self) -> None:
        self._gram: Tensor | None = None  # (D+1, D+1) sum a a^T
        self._cross: Tensor | None = None  # (D+1, D') sum a p^T
        self.count = 0

    def update(self, z: Tensor, p: Tensor) -> None:
        """Add a batch of predictor inputs ``z`` (N, D) and outputs ``p`` (N, D').

        Raises:
            ValueError: If the shapes do not match each other or earlier batches.

        """
        if z.ndim != 2 or p.ndim != 2 or z.shape[0] != p.shape[0]:
            raise ValueError(
                f"expected z (N, D), p (N, D'), got {tuple(z.shape)}, {tuple(p.shape)}"
            )
        a = z.detach().to(torch.float64)  # (N, D)
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)  # (N, D+1)
        b = p.detach().to(device=a.device, dtype=torch.float64)  # (N, D')
        if self._gram is None or self._cross is None:
            self._gram = torch.zeros(a.shape[1], a.shape[1], dtype=torch.float64, device=a.device)
            self._cross = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64, device=a.device)
        elif self._gram.shape[0] != a.shape[1] or self._cross.shape[1] != b.shape[1]:
            raise ValueError("the dimensions of z or p changed between batches")
        self._gram.add_(a.T @ a)  # (D+1, D+1)
        self._cross.add_(a.T @ b)  # (D+1, D')
        self.count += int(a.shape[0])

    def solve(self) -> Tensor:
        """The least-squares ``W`` of shape ``(D', D)``, float64 (the intercept is dropped).

        Raises:
            ValueError: If fewer than ``D + 1`` samples were accumulated.

        """
        if self._gram is None or self._cross is None or self.count < self._gram.shape[0]:
            need = "D + 1" if self._gram is None else str(self._gram.shape[0])
            raise ValueError(f"need at least {need} samples to linearise, got {self.count}")
        g = self._gram
        n = g.shape[0]
        ridge = RIDGE * float(torch.diagonal(g).sum()) / n
        eye = torch.eye(n, dtype=g.dtype, device=g.device)
        chol, info = torch.linalg.cholesky_ex(g + ridge * eye)
        if int(info) == 0:
            sol = torch.cholesky_solve(self._cross, chol)  # (D+1, D')
        else:  # numerically indefinite: a least-squares solve, on the CPU, where the
            # default driver (gelsy) handles rank deficiency; CUDA has only gels, which
            # assumes full rank
            a, b = (g + ridge * eye).cpu(), self._cross.cpu()
            sol = torch.linalg.lstsq(a, b).solution.to(g.device)
        return sol[:-1].T.contiguous()  # (D', D)


def linearise_streamed(z: Tensor, p: Tensor, chunk_size: int = 2048) -> Tensor:
    """Least-squares ``W`` with ``p ~ W z + b`` from embeddings held in memory, in chunks.

    Args:
        z: Predictor inputs, shape ``(N, D)``.
        p: Predictor outputs, shape ``(N, D')``.
        chunk_size: Rows per float64 chunk (bounds the extra memory).

    Returns:
        ``W`` of shape ``(D', D)``, float64.

    """
    acc = LeastSquaresAccumulator()
    for i in range(0, z.shape[0], chunk_size):
        acc.update(z[i : i + chunk_size], p[i : i + chunk_size])
    return acc.solve()
