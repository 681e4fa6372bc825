"""Device-resident training data (data.device_resident): the batched loader's views, no loader.

On CPU the resident batches must equal the batched DataLoader's bit for bit (training and
the eta k-step cache pass), ranks must make exactly their shards, and a run must give the
same numbers either way. The CUDA tests skip without a GPU.
"""

import numpy as np
import pydantic
import pytest
import torch

import siamlab.data.resident as resident_module
from siamlab.bench.runner import run_bench
from siamlab.config.study import StudyFile, expand_study
from siamlab.data.batched import BatchedTwoViewDataset, with_batched_views
from siamlab.data.build import build_datasets
from siamlab.data.config import AugmentConfig, DataConfig
from siamlab.data.loader import train_loader
from siamlab.data.plan import BatchPlan
from siamlab.data.resident import (
    ResidentBatches,
    resident_wanted,
    training_batches,
    with_resident_views,
)
from siamlab.data.sources import ArraySource
from siamlab.data.views import EpochSampler, PairBatches
from siamlab.errors import DataError
from siamlab.eta.build import view_loader
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from tests.conftest import TINY, kill_after_epoch, tiny_runs

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
HALF = (0.5, 0.5, 0.5)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _views(n: int = 40, pairs: int = 1, seed: int = 3) -> BatchedTwoViewDataset:
    """Batched views of random 12x12 images with every augmentation on (blur included)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 12, 12, 3), dtype=np.uint8)
    source = ArraySource(x, np.arange(n) % 4, ["a", "b", "c", "d"])
    return BatchedTwoViewDataset(source, AugmentConfig(mean=HALF, std=HALF), 8, seed, pairs)


def _epochs(views, batches, sampler, epochs=(0, 2)):
    """Every batch of ``epochs`` from ``batches`` (a DataLoader or ResidentBatches)."""
    out = []
    for epoch in epochs:
        views.set_epoch(epoch)
        sampler.set_epoch(epoch)
        out += list(batches)
    return out


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        for s, t in zip(x, y, strict=True):
            assert s.dtype == t.dtype and s.device == t.device
            assert torch.equal(s, t)


@pytest.mark.parametrize(("pairs", "workers"), [(1, 0), (2, 0), (1, 1)])
def test_resident_batches_equal_the_batched_loader_on_cpu(pairs, workers):
    views = _views(pairs=pairs)
    sampler = EpochSampler(40, 12, seed=3, drop_last=False)  # a short last batch too
    batches = PairBatches(sampler, pairs) if pairs > 1 else sampler
    cfg = DataConfig(num_workers=workers)
    loaded = _epochs(views, train_loader(cfg, views, batches, CPU), sampler)
    resident = views.on_device(CPU)
    assert resident.resident and not views.resident
    made = _epochs(resident, ResidentBatches(resident, batches), sampler)
    _assert_same(made, loaded)  # views, labels and indices, in order, both epochs
    assert len(made) == 2 * 4 and made[0][0].shape == (12 * pairs, 3, 8, 8)
    assert not torch.equal(made[0][0], made[4][0])  # epochs differ (the keys hold the epoch)


def test_mid_epoch_start_and_training_batches_choice():
    views, sampler = _views(), EpochSampler(40, 8, seed=3)
    resident = views.on_device(CPU)
    source = training_batches(DataConfig(), resident, sampler, CPU)
    assert isinstance(source, ResidentBatches) and len(source) == 5
    assert not isinstance(training_batches(DataConfig(), views, sampler, CPU), ResidentBatches)
    resident.set_epoch(1)
    sampler.set_epoch(1)
    whole = list(source)
    sampler.set_epoch(1, start_batch=3)  # a resume in the middle of epoch 1
    _assert_same(list(source), whole[3:])


def test_eta_cache_pass_draws_the_training_views():
    """The k-step cache re-draws a window's batches: the same views on both paths."""
    views = _views()
    plan = BatchPlan(40, 8, seed=3)
    window = [plan.batch(s) for s in range(3, 8)]  # steps 3..7 cross into epoch 1
    assert {e for e, _ in window} == {0, 1}
    want, got = (
        [v for e, b in window for v in load(e, [b])]
        for load in (view_loader(views, 0), view_loader(views.on_device(CPU), 0))
    )
    _assert_same(got, want)
    resident = views.on_device(CPU)
    resident.set_epoch(1)
    sampler = EpochSampler(40, 8, seed=3)
    sampler.set_epoch(1)
    train = list(ResidentBatches(resident, sampler))  # what training sees in epoch 1
    _assert_same([want[2]], [train[0][:2]])  # step 5 = epoch 1, batch 0
    assert resident.epoch == 1  # the cache pass left the training dataset's epoch alone


def test_each_rank_augments_its_own_shard():
    """The union of the ranks' batches is the one-process batch (no processes spawned)."""
    views = _views(pairs=2).on_device(CPU)
    whole = EpochSampler(40, 16, seed=3)
    alone = list(ResidentBatches(views, PairBatches(whole, 2)))
    shards = []
    for rank in range(4):
        sampler = EpochSampler(40, 16, seed=3, rank=rank, world_size=4)
        shards.append(list(ResidentBatches(views, PairBatches(sampler, 2))))
    for b, full in enumerate(alone):
        parts = [s[b] for s in shards]
        assert all(p[0].shape[0] == 2 * 16 // 4 for p in parts)  # 4 images x 2 pairs each
        for j in (2, 3):  # labels and image indices: exactly the shares, in rank order
            assert torch.equal(torch.cat([p[j] for p in parts]), full[j])
        for j in (0, 1):
            torch.testing.assert_close(torch.cat([p[j] for p in parts]), full[j], atol=1e-6, rtol=0)


def test_config_validation_and_auto(monkeypatch):
    with pytest.raises(pydantic.ValidationError, match="augment_batched"):
        DataConfig(device_resident=True)
    with pytest.raises(pydantic.ValidationError, match="in-memory"):
        DataConfig(dataset="imagefolder", augment_batched="auto", device_resident=True)
    DataConfig(dataset="imagefolder", augment_batched="auto", device_resident="auto")
    assert DataConfig().device_resident is False
    cfg = DataConfig(dataset="digits", image_size=8, train_limit=64, test_limit=32)
    data = build_datasets(cfg, 0)  # the PIL path
    with pytest.raises(DataError, match="batched views"):
        resident_wanted(cfg.model_copy(update={"device_resident": True}), data.train_views, CPU)
    views = _views()
    auto = DataConfig(augment_batched=True, device_resident="auto")
    assert not resident_wanted(auto, data.train_views, CPU)  # the PIL path: the DataLoader
    threads = torch.get_num_threads()
    try:  # on CPU: in the training process when torch's threads take every core
        for cores, threads_now, wanted in ((4, 4, True), (4, 2, False), (2, 3, True)):
            monkeypatch.setattr(resident_module, "usable_cores", lambda c=cores: c)
            torch.set_num_threads(threads_now)
            assert resident_wanted(auto, views, CPU) is wanted
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("eta", [[], ["objective.eta.mode=cached", "objective.eta.k=3"]])
def test_runs_give_the_same_numbers_with_and_without_the_loader(tmp_path, monkeypatch, eta):
    """A run (and one with the k-step cache, windows across the epoch end) is unchanged.

    The resident run is killed after epoch 1 and resumed on the DataLoader path: the key
    may change on resume, and the result is still the loader run's.
    """
    fast = ["data.augment_batched=true", "train.epochs=2", "train.max_steps=6", *eta]
    loader = [*fast, "data.num_workers=1"]
    a = open_run(train_run(tiny_runs(tmp_path / "a", sets=loader)[0], progress=False).directory)
    resident = tiny_runs(tmp_path / "b", sets=[*loader, "data.device_resident=true"])[0]
    kill_after_epoch(resident, 1, monkeypatch)
    resumed = train_run(tiny_runs(tmp_path / "b", sets=loader)[0], progress=False)
    b = open_run(resumed.directory)
    assert a.attrs["status"] == b.attrs["status"] == "finished"
    timing = {"images_per_second"}
    names = set(a.data_vars) - timing
    assert names == set(b.data_vars) - timing and {"loss", "knn_top1", "z_std_train"} <= names
    for name in sorted(names):  # every step and epoch value, diagnostics and verdicts too
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert np.isfinite(a["loss"].values).all() and a.sizes["step"] == 6


@cuda
@pytest.mark.cuda
def test_cuda_views_match_the_cpu_views():
    gpu = torch.device("cuda")
    views = _views(pairs=2)
    resident = views.on_device(gpu)
    assert resident.images.device.type == "cuda" and resident.images.dtype == torch.uint8
    sampler = EpochSampler(40, 12, seed=3, drop_last=False)
    batches = PairBatches(sampler, 2)
    cpu = _epochs(views, train_loader(DataConfig(), views, batches, CPU), sampler)
    made = _epochs(resident, ResidentBatches(resident, batches), sampler)
    for x, y in zip(made, cpu, strict=True):
        assert x[0].device.type == "cuda" and x[2].device.type == "cpu"
        for j in (0, 1):  # the same draws (other draws differ by O(1)); float rounding only
            diff = (x[j].cpu() - y[j]).abs()
            assert float(diff.max()) < 1e-3 and float(diff.mean()) < 1e-5
        assert torch.equal(x[2], y[2]) and torch.equal(x[3], y[3])


@cuda
@pytest.mark.cuda
def test_cuda_auto_puts_batched_views_on_the_gpu():
    gpu = torch.device("cuda")
    views = _views()
    auto = DataConfig(augment_batched=True, device_resident="auto")
    assert resident_wanted(auto, views, gpu)
    cfg = DataConfig(dataset="digits", image_size=8, augment_batched=True, device_resident="auto")
    data = build_datasets(cfg, 0)
    data = with_resident_views(with_batched_views(data, cfg, 0, 1), cfg, gpu)
    assert data.train_views.images.device.type == "cuda"


@cuda
@pytest.mark.cuda
@pytest.mark.slow
def test_cuda_run_with_resident_data(tmp_path):
    sets = ["data.augment_batched=true", "data.device_resident=true", "train.device=cuda"]
    outcome = train_run(tiny_runs(tmp_path, sets=sets)[0], progress=False)
    ds = open_run(outcome.directory)
    assert ds.attrs["status"] == "finished" and np.isfinite(ds["loss"].values).all()


@pytest.mark.parametrize("resident", [False, True])
def test_bench_times_both_batch_paths_in_one_run(tmp_path, resident):
    sets = [*TINY, "data.augment_batched=true", f"data.device_resident={str(resident).lower()}"]
    spec = expand_study(StudyFile(name="t"), "quick", [*sets, f"output.root={tmp_path}"])[0]
    report = run_bench(spec, steps=1, block=1, warmup=0, loader_batches=2, peak_n=64)
    own, other = report.loader, report.other_loader
    assert other is not None and own.rate > 0 and other.rate > 0
    names = ("device-resident batches", "data loader")
    assert (own.name, other.name) == (names if resident else names[::-1])
