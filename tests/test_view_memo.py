"""The k-step cache pass's resident batches, taken by training instead of made again."""

import numpy as np
import pytest
import torch

from siamlab.data.batched import BatchedTwoViewDataset
from siamlab.data.config import AugmentConfig
from siamlab.data.resident import ResidentBatches
from siamlab.data.sources import ArraySource
from siamlab.data.view_memo import ViewMemo
from siamlab.data.views import EpochSampler
from siamlab.eta.build import view_loader
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint
from tests.conftest import tiny_runs

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _views() -> BatchedTwoViewDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8)
    source = ArraySource(x, np.arange(40) % 4, ["a", "b", "c", "d"])
    recipe = AugmentConfig(mean=(0.5,) * 3, std=(0.5,) * 3)
    return BatchedTwoViewDataset(source, recipe, 8, seed=3).on_device(CPU)


def _batch(n: int = 8) -> tuple[torch.Tensor, ...]:
    return torch.zeros(n, 3, 4, 4), torch.zeros(n, 3, 4, 4), torch.zeros(n), torch.zeros(n)


def test_the_memo_keeps_what_fits_gives_each_batch_once_and_empties_on_a_miss():
    size = sum(t.numel() * t.element_size() for t in _batch())
    memo = ViewMemo(budget_bytes=2 * size)
    for b in range(3):
        memo.put(0, [b], _batch())
    assert len(memo) == 2 and memo.held_bytes == 2 * size  # the third did not fit
    assert memo.take(0, [0]) is not None and memo.held_bytes == size
    assert memo.take(0, [0]) is None  # given once; the miss empties the memo
    assert len(memo) == 0 and memo.held_bytes == 0
    memo.put(1, [5], _batch())
    assert memo.take(0, [5]) is None  # keyed by epoch too
    memo.put(2, [1], _batch())
    memo.put(2, [1], _batch())  # made again (a refresh after a resume): held once
    assert len(memo) == 1 and memo.held_bytes == size


def test_training_takes_the_cache_passs_batches_bit_for_bit():
    views, memo = _views(), ViewMemo()
    sampler = EpochSampler(40, 8, seed=3)
    sampler.set_epoch(1)
    window = list(sampler)  # the epoch's 5 batches
    load = view_loader(views, 0, memo)
    made = list(load(1, window))  # the cache pass: every batch of the window
    views.set_epoch(1)
    calls = []
    original = views.batch
    views.batch = lambda ks: calls.append(ks) or original(ks)  # type: ignore[method-assign]
    taken = list(ResidentBatches(views, sampler, memo))
    assert calls == []  # none made again
    plain = list(ResidentBatches(views, sampler))  # made by training itself
    assert len(calls) == 5
    for a, b, c in zip(taken, plain, made, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])


K_STEPS = ["objective.eta.mode=cached", "data.device_resident=true"]


@pytest.mark.parametrize(
    ("k", "more"),
    [
        ("3", []),
        ("epoch", []),
        # the cache pass makes its views under the training forward's autocast
        ("3", ["train.precision=bf16", "data.augment.blur_p=0.5"]),
    ],
)
def test_a_k_step_run_is_the_same_with_and_without_the_memo(tmp_path, monkeypatch, k, more):
    """Every recorded value and weight the same when training makes every batch itself."""
    sets = [*K_STEPS, f"objective.eta.k={k}", "train.epochs=3", *more]
    hits = []
    take = ViewMemo.take
    monkeypatch.setattr(ViewMemo, "take", lambda self, *a: hits.append(take(self, *a)) or hits[-1])
    with_memo = train_run(tiny_runs(tmp_path / "a", sets=sets)[0], progress=False)
    taken = sum(h is not None for h in hits)  # 4 steps per epoch: windows of 3 or 4 steps
    assert taken == {"3": 8, "epoch": 9}[k], taken  # all but each window's first batch
    monkeypatch.setattr(ViewMemo.__init__, "__defaults__", (0,))  # nothing fits: none kept
    hits.clear()
    without = train_run(tiny_runs(tmp_path / "b", sets=sets)[0], progress=False)
    assert len(hits) == 12 and not any(h is not None for h in hits)
    a, b = open_run(with_memo.directory), open_run(without.directory)
    assert a.sizes["step"] == 12
    for name in a.data_vars:
        if name != "images_per_second":
            assert a[name].equals(b[name]), name
    wa = load_checkpoint(with_memo.directory / "checkpoints")["model"]
    wb = load_checkpoint(without.directory / "checkpoints")["model"]
    assert all(torch.equal(wa[key], wb[key]) for key in wa)
