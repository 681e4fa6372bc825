"""Streaming float64 covariance and eigen-spectrum of embeddings.

The log eigen-spectrum of the embedding covariance reveals *dimensional* collapse (Jing et
al., "Understanding Dimensional Collapse in Contrastive Self-supervised Learning", ICLR 2022):
a healthy spectrum decays slowly while a collapsed one has a tail falling to zero. The
reference code l2-normalises every embedding first (``normalize=True`` here).

Two pitfalls drive the design:

* Precision. Accumulating ``Z^T Z`` in float32 gives eigenvalue noise of order ``1e-8``
  relative to the largest one (a true ``1e-12`` came out as ``6.6e-9`` or even negative), so
  the tail looks flat and hides collapse. Everything here is accumulated and diagonalised in
  float64.
* Sample size. The spectrum of a batch of ``N`` samples has at most ``N`` non-zero
  eigenvalues: stream a fixed evaluation set with ``N >> D`` through
  :class:`CovarianceAccumulator` rather than looking at per-batch spectra.

Singular values of the raw embedding matrix (used by RankMe, Garrido et al., ICML 2023) are
obtained as ``sqrt(eig(Z^T Z))``, which is far cheaper than an SVD of the ``N x D`` matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _descending_eigvalsh(m: Tensor) -> Tensor:
    """Eigenvalues of a symmetric matrix, float64, sorted descending and clamped at zero.

    Args:
        m: Symmetric matrix of shape ``(D, D)``.

    Returns:
        Tensor of shape ``(D,)``.

    """
    m64 = m.to(torch.float64)  # (D, D)
    m64 = 0.5 * (m64 + m64.T)  # enforce exact symmetry before eigvalsh
    evals = torch.linalg.eigvalsh(m64)  # (D,) ascending
    return evals.flip(0).clamp(min=0.0)


class CovarianceAccumulator:
    """Streaming accumulator of ``Z^T Z``, ``sum Z`` and ``N`` in float64.

    Feed batches with :meth:`update`; the sums live on the device of the first batch.
    Sharded accumulators (one per data-parallel worker or per data chunk) are combined with
    :meth:`merge`. The centred covariance is ``(1/N) sum (z_i - mean)(z_i - mean)^T``, as in
    Jing et al. (ICLR 2022).

    Args:
        normalize: If true, every row is l2-normalised (in float64) before accumulation, as
            in the reference code of Jing et al.; the spectrum then describes directions only.

    """

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize
        self._gram: Tensor | None = None  # (D, D) float64, sum z z^T
        self._sum: Tensor | None = None  # (D,) float64, sum z
        self._count = 0

    @property
    def count(self) -> int:
        """Number of samples accumulated so far."""
        return self._count

    @property
    def dim(self) -> int | None:
        """Embedding dimension ``D``, or ``None`` before the first update."""
        return None if self._sum is None else int(self._sum.shape[0])

    def update(self, z: Tensor) -> None:
        """Add a batch of embeddings.

        Args:
            z: Embeddings of shape ``(N, D)``; detached and cast to float64 internally.

        Raises:
            ValueError: If ``z`` is not 2-D or its ``D`` differs from earlier batches.

        """
        if z.ndim != 2:
            raise ValueError(f"expected embeddings of shape (N, D), got shape {tuple(z.shape)}")
        if self._gram is None or self._sum is None:
            d = z.shape[1]
            self._gram = torch.zeros(d, d, dtype=torch.float64, device=z.device)
            self._sum = torch.zeros(d, dtype=torch.float64, device=z.device)
        elif z.shape[1] != self._sum.shape[0]:
            raise ValueError(f"expected D = {self._sum.shape[0]}, got D = {z.shape[1]}")
        z64 = z.detach().to(device=self._gram.device, dtype=torch.float64)  # (N, D)
        if self.normalize:
            z64 = F.normalize(z64, dim=1)
        self._gram.add_(z64.T @ z64)  # (D, D)
        self._sum.add_(z64.sum(dim=0))  # (D,)
        self._count += int(z64.shape[0])

    def merge(self, other: CovarianceAccumulator) -> CovarianceAccumulator:
        """Add the sums of another accumulator into this one (in place).

        Args:
            other: An accumulator with the same ``normalize`` setting and dimension.

        Returns:
            ``self``, to allow chaining.

        Raises:
            ValueError: If the settings or dimensions differ.

        """
        if other.normalize != self.normalize:
            raise ValueError("cannot merge accumulators with different `normalize` settings")
        if other._gram is None or other._sum is None:
            return self
        if self._gram is None or self._sum is None:
            self._gram = other._gram.clone()
            self._sum = other._sum.clone()
        else:
            if other._sum.shape != self._sum.shape:
                raise ValueError(
                    f"cannot merge D = {other._sum.shape[0]} into D = {self._sum.shape[0]}"
                )
            self._gram.add_(other._gram.to(self._gram.device))
            self._sum.add_(other._sum.to(self._sum.device))
        self._count += other._count
        return self

    def _sums(self) -> tuple[Tensor, Tensor]:
        """Return ``(sum z z^T, sum z)``, raising if nothing was accumulated."""
        if self._gram is None or self._sum is None or self._count == 0:
            raise ValueError("no samples accumulated yet: call update() first")
        return self._gram, self._sum

    def mean(self) -> Tensor:
        """Mean embedding, float64, shape ``(D,)``."""
        _, s = self._sums()
        return s / self._count

    def second_moment(self) -> Tensor:
        """Uncentred second moment ``Z^T Z / N``, float64, shape ``(D, D)``."""
        gram, _ = self._sums()
        return gram / self._count

    def covariance(self) -> Tensor:
        """Centred covariance ``Z^T Z / N - mean mean^T`` (1/N normalisation), ``(D, D)``."""
        mu = self.mean()  # (D,)
        cov = self.second_moment() - torch.outer(mu, mu)  # (D, D)
        return 0.5 * (cov + cov.T)

    def eigenvalues(self, centred: bool = True) -> Tensor:
        """Eigenvalues of the covariance (or uncentred second moment), descending.

        Args:
            centred: Use the centred covariance (default) or the uncentred ``Z^T Z / N``.

        Returns:
            Float64 tensor of shape ``(D,)`` sorted descending and clamped at ``0`` (rounding
            can make a zero eigenvalue slightly negative).

        """
        m = self.covariance() if centred else self.second_moment()
        return _descending_eigvalsh(m)

    def singular_values(self) -> Tensor:
        """Singular values of the raw, uncentred ``N x D`` matrix ``Z``, descending.

        Computed as ``sqrt(eig(Z^T Z))`` (no ``1/N``), the quantity RankMe uses (Garrido et
        al., ICML 2023). With ``normalize=True`` this is the matrix of normalised rows.

        Returns:
            Float64 tensor of shape ``(D,)``; only ``min(N, D)`` entries can be non-zero.

        """
        gram, _ = self._sums()
        return _descending_eigvalsh(gram).sqrt()


def covariance_spectrum(z: Tensor, normalize: bool = False) -> Tensor:
    """One-shot centred covariance eigenvalues of an embedding matrix.

    Jing et al. (ICLR 2022): eigenvalues of ``(1/N) sum (z_i - mean)(z_i - mean)^T``,
    accumulated and diagonalised in float64.

    Args:
        z: Embeddings of shape ``(N, D)``.
        normalize: l2-normalise each row first (as the reference code does).

    Returns:
        Float64 tensor of shape ``(D,)``, descending, clamped at ``0``.

    """
    acc = CovarianceAccumulator(normalize=normalize)
    acc.update(z)
    return acc.eigenvalues(centred=True)
