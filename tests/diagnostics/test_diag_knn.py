import pytest
import torch

from siamlab.diagnostics.knn import knn_accuracy, knn_scores, weighted_knn_predict


def _clusters(
    per_class: int, num_classes: int, d: int, seed: int, spread: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.linalg.qr(
        torch.randn(d, num_classes, generator=torch.Generator().manual_seed(100))
    )[0].T  # orthonormal
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), d, generator=g)
    return feats * 5.0, labels  # un-normalised on purpose


def test_separable_clusters_are_classified_perfectly() -> None:
    bank, bank_y = _clusters(100, 10, 64, seed=0)
    test, test_y = _clusters(30, 10, 64, seed=1)
    pred = weighted_knn_predict(bank, bank_y, test, num_classes=10, k=50)
    assert pred.dtype == torch.int64 and pred.shape == (300,)
    assert torch.equal(pred, test_y)
    acc = knn_accuracy(bank, bank_y, test, test_y, num_classes=10)
    assert acc == {"top1": 1.0, "top5": 1.0}


def test_scores_closed_form_and_chunking_invariance() -> None:
    g = torch.Generator().manual_seed(2)
    bank, bank_y = torch.randn(120, 16, generator=g), torch.randint(0, 4, (120,), generator=g)
    queries = torch.randn(37, 16, generator=g)
    ref = knn_scores(bank, bank_y, queries, 4, k=10, temperature=0.07, chunk_size=1000)
    for chunk in (1, 5, 36, 37):
        got = knn_scores(bank, bank_y, queries, 4, k=10, temperature=0.07, chunk_size=chunk)
        assert torch.allclose(got, ref, rtol=1e-4)  # float32 matmul rounding, amplified by 1/T
    # brute-force reference for one query
    bn = torch.nn.functional.normalize(bank, dim=1)
    qn = torch.nn.functional.normalize(queries[0], dim=0)
    sim = bn @ qn
    top = sim.topk(10).indices
    expected = torch.zeros(4)
    for i in top:
        expected[bank_y[i]] += torch.exp(sim[i] / 0.07)
    assert torch.allclose(ref[0], expected, rtol=1e-5)
    assert torch.allclose(ref.sum(1)[0], torch.exp(sim[top] / 0.07).sum(), rtol=1e-5)


def test_k_larger_than_bank_uses_whole_bank() -> None:
    g = torch.Generator().manual_seed(3)
    bank, bank_y = torch.randn(15, 8, generator=g), torch.randint(0, 3, (15,), generator=g)
    queries = torch.randn(6, 8, generator=g)
    big = knn_scores(bank, bank_y, queries, 3, k=200)
    exact = knn_scores(bank, bank_y, queries, 3, k=15)
    assert torch.allclose(big, exact)
    assert weighted_knn_predict(bank, bank_y, queries, 3, k=200).shape == (6,)


def test_top5_with_fewer_than_five_classes_and_chance_level() -> None:
    g = torch.Generator().manual_seed(4)
    bank, bank_y = torch.randn(400, 32, generator=g), torch.randint(0, 3, (400,), generator=g)
    queries, query_y = torch.randn(300, 32, generator=g), torch.randint(0, 3, (300,), generator=g)
    acc = knn_accuracy(bank, bank_y, queries, query_y, num_classes=3)
    assert acc["top5"] == 1.0  # min(5, C) = 3 classes cover everything
    assert acc["top1"] == pytest.approx(1 / 3, abs=0.1)  # random features: chance


def test_collapsed_features_give_majority_class() -> None:
    bank = torch.ones(50, 8)
    bank_y = torch.tensor([0] * 10 + [1] * 40)
    pred = weighted_knn_predict(bank, bank_y, torch.ones(5, 8), num_classes=2)
    assert torch.equal(pred, torch.ones(5, dtype=torch.int64))


def test_errors() -> None:
    bank, bank_y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError):
        knn_scores(bank, bank_y, torch.randn(3, 5), 2)
    with pytest.raises(ValueError):
        knn_scores(bank, bank_y + 5, torch.randn(3, 4), 2)
    with pytest.raises(ValueError):
        knn_accuracy(bank, bank_y, torch.randn(3, 4), torch.zeros(4, dtype=torch.long), 2)
