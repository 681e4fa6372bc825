"""Alignment, uniformity and branch cosine of l2-normalised embeddings.

Alignment and uniformity are from Wang & Isola, "Understanding Contrastive Representation
Learning through Alignment and Uniformity on the Hypersphere", ICML 2020:

* ``align = E ||f(x) - f(y)||^alpha`` over positive pairs (two views of one image);
* ``uniform = log E exp(-t ||f(x) - f(y)||^2)`` over independent pairs, ``t = 2``.

Both act on l2-normalised features; this module normalises the rows itself. Complete
collapse gives ``align = 0`` and ``uniform = 0``; isotropic features in ``D`` dimensions give
``uniform ~ -2t + 2t^2/D`` (about ``-4`` at ``t = 2``). Uniformity is, like the channel std,
blind to dimensional collapse.

Uniformity is ``O(N^2 D)``: it is computed over tiles of ``block_size x block_size`` pairs
with ``||x - y||^2 = ||x||^2 + ||y||^2 - 2 x^T y`` (``= 2 - 2 x^T y`` for unit rows) and a
log-sum-exp, so the ``N x N`` distance matrix is never materialised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _unit_rows(x: Tensor, name: str) -> Tensor:
    """Detach, promote to at least float32 and l2-normalise the rows of a 2-D tensor.

    Args:
        x: Features of shape ``(N, D)``.
        name: Argument name for error messages.

    Returns:
        Tensor of shape ``(N, D)``; zero rows stay zero.

    Raises:
        ValueError: If ``x`` is not 2-D.

    """
    if x.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, D), got {tuple(x.shape)}")
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    return F.normalize(x, dim=1)


def _check_pairs(a: Tensor, b: Tensor) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are matching non-empty ``(N, D)`` batches."""
    if a.shape != b.shape:
        raise ValueError(f"paired batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise ValueError("expected at least one pair, got N = 0")


def alignment(x: Tensor, y: Tensor, alpha: float = 2) -> float:
    """Alignment loss of positive pairs (Wang & Isola, ICML 2020).

    ``E_i ||x_i/||x_i|| - y_i/||y_i|| ||^alpha``, where row ``i`` of ``x`` and ``y`` are the
    two views of the same sample. In ``[0, 2^alpha]``; ``0`` means perfectly aligned views.

    Args:
        x: Features of the first views, shape ``(N, D)``.
        y: Features of the second views, shape ``(N, D)``.
        alpha: Exponent of the distance (2 in the paper).

    Returns:
        The mean distance to the power ``alpha``.

    Raises:
        ValueError: If the shapes differ, are not 2-D, or ``N = 0``.

    """
    return float(unit_alignment(_unit_rows(x, "x"), _unit_rows(y, "y"), alpha).item())


def unit_alignment(xn: Tensor, yn: Tensor, alpha: float = 2) -> Tensor:
    """:func:`alignment` of rows already l2-normalised, as a 0-d tensor.

    Raises:
        ValueError: If the shapes differ or ``N = 0``.
    """
    _check_pairs(xn, yn)
    dist = torch.linalg.vector_norm(xn - yn.to(xn.dtype), dim=1)  # (N,)
    return dist.pow(alpha).mean()


def sampled_rows(n: int, limit: int | None) -> torch.Tensor:
    """``limit`` of ``n`` row indices under a fixed seeded permutation, sorted: (k,) int64.

    All rows where ``limit`` is None or >= n. A sample, not the first rows: an image
    folder's splits are sorted by class, so its first rows are its first classes.
    """
    if limit is None or limit >= n:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit]
    return order.sort().values


def uniformity(x: Tensor, t: float = 2, block_size: int = 1024) -> float:
    """Uniformity of the feature distribution on the hypersphere (Wang & Isola, ICML 2020).

    ``log( 1/(N(N-1)) sum_{i != j} exp(-t ||x_i - x_j||^2) )`` over all distinct pairs of the
    l2-normalised rows -- identical to the paper's ``pdist``-based formula
    ``log mean exp(-t pdist(x)^2)``. Tiles of at most ``block_size x block_size`` pairs are
    reduced with a log-sum-exp (accumulated in float64); only tiles on or above the block
    diagonal are computed and off-diagonal ones are counted twice by symmetry.

    Args:
        x: Features of shape ``(N, D)`` with ``N >= 2``.
        t: Temperature of the Gaussian potential (2 in the paper).
        block_size: Tile side; bounds the memory at ``block_size^2`` entries.

    Returns:
        The uniformity, ``<= 0``; ``0`` for a collapsed (constant) output.

    Raises:
        ValueError: If ``x`` is not 2-D, ``N < 2`` or ``block_size < 1``.

    """
    xn = _unit_rows(x, "x")  # (N, D)
    n = xn.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 samples, got N = {n}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    sq_norm = xn.pow(2).sum(dim=1)  # (N,) 1, or 0 for zero rows
    log_two = math.log(2.0)
    parts: list[Tensor] = []
    for i0 in range(0, n, block_size):
        xi, ni = xn[i0 : i0 + block_size], sq_norm[i0 : i0 + block_size]  # (B, D), (B,)
        for j0 in range(i0, n, block_size):
            xj, nj = xn[j0 : j0 + block_size], sq_norm[j0 : j0 + block_size]  # (B', D)
            sq_dist = (ni[:, None] + nj[None, :] - 2.0 * (xi @ xj.T)).clamp(min=0.0)  # (B, B')
            logits = (-t * sq_dist).to(torch.float64)  # (B, B')
            if j0 == i0:
                logits.fill_diagonal_(-math.inf)  # exclude i == j
                if logits.shape[0] == 1:
                    continue  # a 1x1 diagonal tile holds no distinct pair
                parts.append(torch.logsumexp(logits.flatten(), dim=0))
            else:
                parts.append(torch.logsumexp(logits.flatten(), dim=0) + log_two)
    total = torch.logsumexp(torch.stack(parts), dim=0)
    return float(total.item()) - math.log(n * (n - 1))


def branch_cosine(a: Tensor, b: Tensor) -> float:
    """Mean cosine similarity between matching rows of two branches.

    Used for the SimSiam loss ``-cos(p1, stopgrad(z2))`` (Chen & He, CVPR 2021): a mean
    cosine that reaches ``1`` together with a channel std going to ``0`` is complete collapse.

    Args:
        a: Outputs of one branch (e.g. predictor outputs ``p``), shape ``(N, D)``.
        b: Outputs of the other branch (e.g. projections ``z``), shape ``(N, D)``.

    Returns:
        ``mean_i cos(a_i, b_i)`` in ``[-1, 1]``.

    Raises:
        ValueError: If the shapes differ, are not 2-D, or ``N = 0``.

    """
    return float(unit_branch_cosine(_unit_rows(a, "a"), _unit_rows(b, "b")).item())


def unit_branch_cosine(an: Tensor, bn: Tensor) -> Tensor:
    """:func:`branch_cosine` of rows already l2-normalised, as a 0-d tensor.

    Raises:
        ValueError: If the shapes differ or ``N = 0``.
    """
    _check_pairs(an, bn)
    return (an * bn.to(an.dtype)).sum(dim=1).mean()
