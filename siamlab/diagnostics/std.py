"""Per-channel standard deviation and centre ratio of l2-normalised embeddings.

These are the cheap per-batch collapse monitors:

* the channel std of ``z / ||z||`` from SimSiam (Chen & He, "Exploring Simple Siamese
  Representation Learning", CVPR 2021, Sec. 4.1 and Fig. 2), which is about ``1/sqrt(d)`` for
  healthy isotropic outputs and ``0`` under complete collapse;
* the centre ratio ``||E[z / ||z||]||`` from Zhang et al. ("How Does SimSiam Avoid Collapse
  Without Negative Samples?", ICLR 2022), which goes to ``1`` under collapse and has a healthy
  floor of about ``1/sqrt(N)``.

Both are tied by the identity ``sum_c Var(z'_c) = 1 - ||E z'||^2`` (population variance,
``z' = z / ||z||``), and both are blind to *dimensional* collapse: data confined to a rank-k
subspace keeps a near-healthy std for modest k. Use the spectrum and rank metrics for that.

All functions are pure: they detach their input, compute in float64 and never modify it.
Rows whose norm is zero are mapped to the zero vector by ``F.normalize`` (eps ``1e-12``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _normalised_rows(z: Tensor) -> Tensor:
    """Return the detached, float64, row-l2-normalised copy of a 2-D embedding batch.

    Args:
        z: Embeddings of shape ``(N, D)``.

    Returns:
        Tensor of shape ``(N, D)`` in float64 whose non-zero rows have unit norm.

    Raises:
        ValueError: If ``z`` is not 2-D or has no rows.

    """
    if z.ndim != 2:
        raise ValueError(f"expected embeddings of shape (N, D), got shape {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError("expected at least one sample, got N = 0")
    return F.normalize(z.detach().to(torch.float64), dim=1)  # (N, D)


def channel_std(z: Tensor) -> Tensor:
    """Per-channel standard deviation of the l2-normalised embeddings.

    SimSiam (Chen & He, CVPR 2021), Sec. 4.1 / Fig. 2: each row is divided by its l2 norm
    and the standard deviation of every output channel is taken over the samples. For
    isotropic Gaussian ``z`` each channel has std close to ``1/sqrt(D)``; complete collapse
    (all rows equal) gives exactly ``0``.

    The *population* std (``correction=0``, i.e. divide by ``N``) is used, so that
    ``sum(channel_std(z) ** 2) + centre_ratio(z) ** 2 == 1`` holds exactly for rows of unit
    norm. For the batch sizes used in practice (hundreds or more) the difference to the
    unbiased estimator is negligible. Note that with a batch-norm layer at the projector
    output the value depends on whether the model is in train or eval mode.

    Args:
        z: Embeddings of shape ``(N, D)``, any floating dtype and device.

    Returns:
        Tensor of shape ``(D,)`` with the std of each channel, in ``z``'s dtype (float64
        when ``z`` is not floating point), on ``z``'s device.

    Raises:
        ValueError: If ``z`` is not 2-D or has no rows.

    """
    zn = _normalised_rows(z)  # (N, D)
    std = zn.std(dim=0, correction=0)  # (D,)
    return std.to(z.dtype) if z.is_floating_point() else std


def mean_channel_std(z: Tensor) -> float:
    """Mean over channels of :func:`channel_std` (the number plotted in SimSiam Fig. 2).

    SimSiam (Chen & He, CVPR 2021), Sec. 4.1. Healthy isotropic outputs give about
    ``1/sqrt(D)`` (0.0221 at ``D = 2048``); multiply by ``sqrt(D)`` to compare across widths.

    Args:
        z: Embeddings of shape ``(N, D)``.

    Returns:
        The mean per-channel std of ``z / ||z||`` (population std, see :func:`channel_std`).

    Raises:
        ValueError: If ``z`` is not 2-D or has no rows.

    """
    zn = _normalised_rows(z)  # (N, D)
    return float(zn.std(dim=0, correction=0).mean().item())


def unit_mean_channel_std(zn: Tensor) -> Tensor:
    """:func:`mean_channel_std` of rows already l2-normalised, as a 0-d tensor.

    Two passes (the mean, then the mean squared deviation) instead of ``std``'s Welford
    reduction, which is ~6x slower on a (B, d) batch on the CPU: the same population std
    up to float rounding (float64 rows: ~1e-16 relative; ``tests/diagnostics``).

    Args:
        zn: l2-normalised embeddings of shape ``(N, D)``, e.g. ``StepView.unit_rows``.
    """
    centred = zn - zn.mean(dim=0)  # (N, D)
    return centred.square_().mean(dim=0).sqrt_().mean()


def centre_ratio(z: Tensor) -> float:
    """Norm of the mean of the l2-normalised embeddings, ``||E[z / ||z||]||``.

    Zhang et al., "How Does SimSiam Avoid Collapse Without Negative Samples? A Unified
    Understanding with Self-supervised Contrastive Learning", ICLR 2022: the normalised
    output is split into a centre ``o = E[z']`` and residual ``z' - o``; collapse drives
    ``||o||`` to ``1`` and the residual to ``0``. Even a perfectly healthy batch of ``N``
    isotropic samples keeps ``||o|| ~ 1/sqrt(N)``, so never threshold it without the batch
    size.

    Args:
        z: Embeddings of shape ``(N, D)``.

    Returns:
        The centre ratio, in ``[0, 1]``.

    Raises:
        ValueError: If ``z`` is not 2-D or has no rows.

    """
    return float(unit_centre_ratio(_normalised_rows(z)).item())


def unit_centre_ratio(zn: Tensor) -> Tensor:
    """:func:`centre_ratio` of rows already l2-normalised (float64), as a 0-d tensor."""
    return torch.linalg.vector_norm(zn.mean(dim=0))
