"""Weighted k-nearest-neighbour monitor of representation quality.

The classifier is InstDisc's (Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", CVPR 2018). The bank holds the l2-normalised features of the
training set (computed with the *test* transform, model in eval mode); every query votes with
its ``k`` most cosine-similar bank entries, each weighted by ``exp(sim / T)``. SimSiam's
CIFAR demos use ``k = 200, T = 0.1``; InstDisc uses ``T = 0.07``.

The similarity matrix costs ``~2 Q M D`` flop for ``Q`` queries and ``M`` bank entries, so it is
computed ``chunk_size`` queries at a time. Chance accuracy is ``1 / num_classes``; chance
alone does not prove collapse (a diverging run gives it too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_scores(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> Tensor:
    """Class scores of the InstDisc weighted kNN classifier (Wu et al., CVPR 2018).

    ``score[q, c] = sum_{m in topk(q)} [label_m = c] exp(cos(q, m) / T)``, where ``topk(q)``
    are the ``min(k, M)`` bank entries most cosine-similar to query ``q``. Features are
    l2-normalised here, so raw backbone features may be passed.

    Args:
        bank: Bank features, shape ``(M, D)``.
        bank_labels: Integer labels of the bank, shape ``(M,)``, in ``[0, num_classes)``.
        queries: Query features, shape ``(Q, D)``.
        num_classes: Number of classes ``C``.
        k: Number of neighbours; clipped to the bank size.
        temperature: Temperature ``T`` of the vote weights.
        chunk_size: Queries processed at once (bounds memory at ``chunk_size x M``).

    Returns:
        Float32 scores of shape ``(Q, C)`` on the bank's device.

    Raises:
        ValueError: On inconsistent shapes, an empty bank, labels out of range or
            non-positive ``k``, ``temperature`` or ``chunk_size``.

    """
    if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1]:
        raise ValueError(
            f"expected bank (M, D) and queries (Q, D), got {tuple(bank.shape)} "
            f"and {tuple(queries.shape)}"
        )
    if bank_labels.shape != (bank.shape[0],):
        raise ValueError(
            f"bank_labels must have shape ({bank.shape[0]},), got {tuple(bank_labels.shape)}"
        )
    if bank.shape[0] == 0:
        raise ValueError("the feature bank is empty")
    if k < 1 or temperature <= 0 or chunk_size < 1 or num_classes < 1:
        raise ValueError("k, temperature, chunk_size and num_classes must be positive")
    labels = bank_labels.detach().to(device=bank.device, dtype=torch.long)  # (M,)
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"bank_labels must lie in [0, {num_classes})")
    bank_n = F.normalize(bank.detach().float(), dim=1)  # (M, D)
    k_eff = min(k, bank_n.shape[0])
    out: list[Tensor] = []
    for q0 in range(0, queries.shape[0], chunk_size):
        q = queries[q0 : q0 + chunk_size].detach().to(device=bank.device, dtype=torch.float32)
        sim = F.normalize(q, dim=1) @ bank_n.T  # (B, M)
        top_sim, top_idx = sim.topk(k_eff, dim=1)  # (B, k)
        weights = (top_sim / temperature).exp()  # (B, k)
        scores = torch.zeros(q.shape[0], num_classes, device=bank.device)  # (B, C)
        scores.scatter_add_(1, labels[top_idx], weights)
        out.append(scores)
    if not out:
        return torch.zeros(0, num_classes, device=bank.device)
    return torch.cat(out, dim=0)  # (Q, C)


def weighted_knn_predict(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> Tensor:
    """Predicted labels of the InstDisc weighted kNN classifier (Wu et al., CVPR 2018).

    The argmax over classes of :func:`knn_scores` (ties go to the lowest class index);
    the arguments are those of :func:`knn_scores`.

    Returns:
        Int64 predicted labels of shape ``(Q,)``.
    """
    scores = knn_scores(bank, bank_labels, queries, num_classes, k, temperature, chunk_size)
    return scores.argmax(dim=1)  # (Q,)


def knn_accuracy(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    query_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy of the InstDisc weighted kNN classifier (Wu et al., 2018).

    Args:
        bank: Bank features, shape ``(M, D)``.
        bank_labels: Integer labels of the bank, shape ``(M,)``.
        queries: Query features, shape ``(Q, D)``.
        query_labels: True labels of the queries, shape ``(Q,)``.
        num_classes: Number of classes ``C``.
        k: Number of neighbours; clipped to the bank size.
        temperature: Temperature ``T`` of the vote weights.
        chunk_size: Queries processed at once.

    Returns:
        ``{"top1": ..., "top5": ...}`` as fractions in ``[0, 1]``. ``top5`` uses the
        ``min(5, C)`` best classes, so it is trivially ``1.0`` when ``C <= 5``.

    Raises:
        ValueError: If there are no queries or ``query_labels`` has the wrong shape.

    """
    if queries.ndim != 2 or queries.shape[0] == 0:
        raise ValueError(f"expected a non-empty (Q, D) query batch, got {tuple(queries.shape)}")
    if query_labels.shape != (queries.shape[0],):
        raise ValueError(
            f"query_labels must have shape ({queries.shape[0]},), got {tuple(query_labels.shape)}"
        )
    scores = knn_scores(bank, bank_labels, queries, num_classes, k, temperature, chunk_size)
    target = query_labels.detach().to(device=scores.device, dtype=torch.long)  # (Q,)
    top1 = scores.argmax(dim=1) == target  # (Q,) same tie-breaking as the predictions
    ranked = scores.topk(min(5, num_classes), dim=1).indices  # (Q, min(5, C))
    top5 = (ranked == target[:, None]).any(dim=1) | top1  # (Q,)
    return {"top1": float(top1.float().mean().item()), "top5": float(top5.float().mean().item())}
