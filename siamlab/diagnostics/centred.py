"""Centred geometry of l2-normalised embeddings: the centre and the residual around it.

Zhang et al., "How does SimSiam avoid collapse without negative samples? A unified
understanding with self-supervised contrastive learning", ICLR 2022, split each normalised
output ``z' = z / ||z||`` into the centre ``o = E[z']`` shared by all images and the
residual ``r = z' - o`` that tells images apart. Collapse is a statement about the
residual, not about ``z'``: an output with a large common offset and a full-rank residual
(every image still distinct, in every direction) is not collapsed, although its uncentred
channel std and uniformity look like a collapse's (docs/diagnostics.md#centred-geometry).

For unit rows ``||o||^2 + E||r||^2 = 1``, so:

* ``residual_norm = sqrt(E||r||^2)``: how far images are from their centre, on the unit
  sphere; ``0`` = complete collapse (all images map to one point), ``~1`` = no offset;
* the *shape* of the residual is read from the re-normalised rows ``r / ||r||``: their
  mean channel std times ``sqrt(d)`` (``1`` when the residual is isotropic, whatever the
  offset), their effective rank (Roy & Vetterli, EUSIPCO 2007) as a fraction of
  ``min(d, N)``, and their uniformity (Wang & Isola, ICML 2020).

A residual of norm ~0 re-normalises to noise, so its shape means nothing; the verdict
reads the shape only where the norm is not ~0 (:mod:`siamlab.diagnostics.verdict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from siamlab.diagnostics.geometry import sampled_rows, uniformity
from siamlab.diagnostics.rank import effective_rank

CHUNK = 4096  # rows moved and cast to float64 at once
TINY = 1e-12  # a residual row shorter than this is zero (F.normalize's eps)


@dataclass(frozen=True)
class CentredGeometry:
    """The centre/residual split of one set of embeddings (all in float64, as floats).

    Attributes:
        centre_norm: ``||E[z']||``, in [0, 1] (the centre ratio; ~1/sqrt(N) when healthy).
        residual_norm: ``sqrt(E||z' - o||^2) = sqrt(1 - ||o||^2)``, in [0, 1].
        residual_std_sqrt_d: mean channel std of ``r / ||r||`` times sqrt(d): 1 = isotropic.
        residual_erank_fraction: effective rank of ``r / ||r||`` over ``min(d, N)``.
        residual_uniformity: uniformity (t = 2) of ``r / ||r||``; ~-4 isotropic, 0 constant.
    """

    centre_norm: float
    residual_norm: float
    residual_std_sqrt_d: float
    residual_erank_fraction: float
    residual_uniformity: float


def _unit(x: Tensor, device: torch.device) -> Tensor:
    return F.normalize(x.to(device=device, dtype=torch.float64), dim=1)  # (n, D)


def centred_geometry(
    x: Tensor, uniformity_samples: int = 4096, device: torch.device | None = None
) -> CentredGeometry:
    """Centre and residual of the l2-normalised rows of ``x``.

    Two passes in float64 chunks: the centre, then the residual's norms and the second
    moment of the re-normalised residual (``D x D``) whose eigenvalues give its singular
    values. Uniformity is taken on a seeded sample of ``uniformity_samples`` rows (it is
    O(N^2); :func:`~siamlab.diagnostics.geometry.sampled_rows`).

    Args:
        x: Embeddings, shape ``(N, D)`` with ``N >= 2``, any float dtype and device.
        uniformity_samples: rows used for the residual's uniformity.
        device: where to compute (default: ``x``'s device).

    Returns:
        The :class:`CentredGeometry`; identical rows give residual norm, std, erank and
        uniformity ``0``.

    Raises:
        ValueError: if ``x`` is not ``(N, D)`` with ``N >= 2``.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected embeddings of shape (N >= 2, D), got {tuple(x.shape)}")
    dev = device or x.device
    n, d = x.shape
    centre = torch.zeros(d, dtype=torch.float64, device=dev)  # (D,)
    for i in range(0, n, CHUNK):
        centre += _unit(x[i : i + CHUNK], dev).sum(dim=0)
    centre /= n
    sq_residual = 0.0
    moment = torch.zeros(d, d, dtype=torch.float64, device=dev)  # (D, D) of r/||r||
    total = torch.zeros(d, dtype=torch.float64, device=dev)  # (D,) sum of r/||r||
    sampled = sampled_rows(n, uniformity_samples).to(dev)  # (k,) sorted rows for uniformity
    first: list[Tensor] = []
    for i in range(0, n, CHUNK):
        r = _unit(x[i : i + CHUNK], dev) - centre  # (n_i, D)
        norms = torch.linalg.vector_norm(r, dim=1)  # (n_i,)
        sq_residual += float(norms.pow(2).sum())
        unit_r = torch.where(norms[:, None] > TINY, r / norms.clamp(min=TINY)[:, None], 0.0)
        moment += unit_r.T @ unit_r
        total += unit_r.sum(dim=0)
        here = sampled[(sampled >= i) & (sampled < i + CHUNK)] - i  # (k_i,)
        first.append(unit_r[here])
    mean = total / n  # (D,)
    variance = (moment.diagonal() / n - mean.pow(2)).clamp(min=0.0)  # (D,) population
    std_sqrt_d = float(variance.sqrt().mean()) * math.sqrt(d)
    eigenvalues = torch.linalg.eigvalsh(moment).clamp(min=0.0)  # (D,) = singular values^2
    if float(eigenvalues.sum()) > 0:
        erank = effective_rank(eigenvalues.sqrt()) / min(d, n)
        uniform = uniformity(torch.cat(first))
    else:  # every residual row is zero: all images are one point
        erank, uniform = 0.0, 0.0
    return CentredGeometry(
        centre_norm=float(torch.linalg.vector_norm(centre)),
        residual_norm=math.sqrt(max(sq_residual / n, 0.0)),
        residual_std_sqrt_d=std_sqrt_d,
        residual_erank_fraction=erank,
        residual_uniformity=uniform,
    )
