import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from siamlab.data.config import AugmentConfig
from siamlab.data.sources import ArraySource
from siamlab.data.transforms import eval_transform, train_transform
from siamlab.data.views import EpochSampler, EvalDataset, TwoViewDataset, mix_seed
from siamlab.errors import DataError


def _source(n: int = 12, side: int = 20) -> ArraySource:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)  # (N, H, W, 3)
    return ArraySource(x, np.arange(n) % 3, ["a", "b", "c"])


def _views(seed: int = 0) -> TwoViewDataset:
    return TwoViewDataset(_source(), train_transform(AugmentConfig(), 16), seed=seed)


def test_mix_seed_is_stable_and_63_bit() -> None:
    assert mix_seed("views", 0, 1, 2) == mix_seed("views", 0, 1, 2)
    assert len({mix_seed("views", 0, e, i) for e in range(5) for i in range(50)}) == 250
    assert all(0 <= mix_seed(s, -s) < 2**63 for s in range(100))


def test_two_views_are_keyed_by_seed_epoch_and_index() -> None:
    ds, other = _views(), _views()
    forward = [ds[i] for i in range(6)]
    backward = [other[i] for i in reversed(range(6))][::-1]
    for (a1, a2, label, i), (b1, b2, _, j) in zip(forward, backward, strict=True):
        assert i == j and label == i % 3
        assert torch.equal(a1, b1) and torch.equal(a2, b2)
        assert a1.shape == (3, 16, 16) and not torch.equal(a1, a2)
    assert torch.equal(ds[3][0], forward[3][0])  # repeated access
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], forward[3][0])
    ds.set_epoch(0)
    assert torch.equal(ds[3][0], forward[3][0])
    assert not torch.equal(_views(seed=1)[3][0], forward[3][0])


def test_two_views_leave_the_global_rng_alone() -> None:
    ds = _views()
    torch.manual_seed(11)
    before = torch.get_rng_state()
    ds[0]
    assert torch.equal(before, torch.get_rng_state())


def test_two_views_do_not_depend_on_workers() -> None:
    ds = _views()
    ds.set_epoch(2)
    sampler = EpochSampler(len(ds), 4, seed=0)
    sampler.set_epoch(2)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers)
        return [torch.cat([v1, v2]) for v1, v2, _, _ in loader]

    for a, b in zip(batches(0), batches(2), strict=True):
        assert torch.equal(a, b)


def test_eval_dataset() -> None:
    ds = EvalDataset(_source(side=16), eval_transform(AugmentConfig(), 16))
    x, label, i = ds[5]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and (label, i) == (2, 5)
    assert torch.equal(x, ds[5][0]) and len(ds) == 12


@pytest.mark.parametrize(("keep_bytes", "kept"), [(1 << 20, True), (1000, False), (0, False)])
def test_eval_dataset_keeps_its_images_when_they_fit(keep_bytes, kept) -> None:
    calls = []
    transform = eval_transform(AugmentConfig(), 16)

    def counted(img):
        calls.append(1)
        return transform(img)

    plain = EvalDataset(_source(side=16), transform)
    ds = EvalDataset(_source(side=16), counted, keep_bytes)  # 12 images of 3 KB
    first = [x for x, _, _ in DataLoader(ds, batch_size=5)]
    again = [x for x, _, _ in DataLoader(ds, batch_size=5)]
    assert len(calls) == 12 * (1 if kept else 2)
    want = [x for x, _, _ in DataLoader(plain, batch_size=5)]
    for a, b, c in zip(first, again, want, strict=True):
        assert torch.equal(a, c) and torch.equal(b, c)
    assert ds[3][1:] == plain[3][1:]


def _all(sampler: EpochSampler) -> list[list[int]]:
    return list(sampler)


def test_epoch_sampler_is_a_keyed_permutation() -> None:
    s = EpochSampler(103, 10, seed=4)
    first = _all(s)
    assert len(first) == len(s) == 10 and all(len(b) == 10 for b in first)
    flat = [i for b in first for i in b]
    assert len(set(flat)) == 100 and max(flat) < 103
    assert _all(EpochSampler(103, 10, seed=4)) == first
    assert _all(EpochSampler(103, 10, seed=5)) != first
    s.set_epoch(1)
    assert _all(s) != first
    s.set_epoch(0)
    assert _all(s) == first
    keep = EpochSampler(103, 10, seed=4, drop_last=False)
    assert len(keep) == 11 and sorted(i for b in keep for i in b) == list(range(103))


@pytest.mark.parametrize("world_size", [2, 4])
def test_epoch_sampler_rank_shards_join_to_the_global_batches(world_size: int) -> None:
    single = EpochSampler(50, 8, seed=1)
    single.set_epoch(3)
    ranks = [EpochSampler(50, 8, seed=1, rank=r, world_size=world_size) for r in range(world_size)]
    for r in ranks:
        r.set_epoch(3)
    shards = [_all(r) for r in ranks]
    assert all(len(s) == len(single) == 6 for s in shards)
    joined: list[list[int]] = [sum(parts, []) for parts in zip(*shards, strict=True)]
    assert joined == _all(single)


def test_epoch_sampler_short_last_batch_over_ranks() -> None:
    ranks = [EpochSampler(10, 4, 0, drop_last=False, rank=r, world_size=4) for r in range(4)]
    shards = [_all(r) for r in ranks]
    assert [len(s) for s in shards] == [len(r) for r in ranks] == [3, 3, 2, 2]
    assert sorted(i for s in shards for b in s for i in b) == list(range(10))


def test_epoch_sampler_start_batch_resumes_mid_epoch() -> None:
    s = EpochSampler(64, 8, seed=2)
    s.set_epoch(5)
    full = _all(s)
    s.set_epoch(5, start_batch=3)
    assert len(s) == 5 and _all(s) == full[3:]
    s.set_epoch(5, start_batch=8)
    assert len(s) == 0 and _all(s) == []
    with pytest.raises(ValueError, match="start_batch"):
        s.set_epoch(5, start_batch=9)


def test_epoch_sampler_errors() -> None:
    with pytest.raises(DataError, match=r"batch size 64 exceeds the dataset's 50 images"):
        EpochSampler(50, 64, seed=0)
    assert len(EpochSampler(50, 64, seed=0, drop_last=False)) == 1
    with pytest.raises(DataError, match="not divisible"):
        EpochSampler(50, 10, seed=0, world_size=4)
    with pytest.raises(ValueError):
        EpochSampler(50, 10, seed=0, rank=2, world_size=2)
