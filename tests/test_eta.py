"""The EM-hypothesis targets (paper Sec. 5): k-step alternation and moving-average eta."""

import numpy as np
import pytest
import torch
import xarray as xr

from siamlab.data.plan import BatchPlan
from siamlab.errors import ResultsError
from siamlab.eta.cached import CachedTargets
from siamlab.eta.moving_average import MovingAverageTargets
from siamlab.eta.provider import with_targets
from siamlab.eta.table import EtaTable
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import SiameseOutput, create_model
from siamlab.results.store import open_run
from siamlab.run.checkpointer import Checkpointer, Part
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint
from siamlab.train.distributed import DistInfo
from tests.conftest import PIL_LOADER, kill_after_epoch, tiny_runs


def _run(tmp_path, *sets):
    return open_run(train_run(tiny_runs(tmp_path, sets=list(sets))[0], progress=False).directory)


def _weights(tmp_path):
    return load_checkpoint(tmp_path / "tiny" / "default" / "seed0" / "checkpoints")["model"]


SIMSIAM_AS_ETA = {  # eta settings that are SimSiam exactly (Sec. 5.2)
    "cached_k1": ["objective.eta.mode=cached", "objective.eta.k=1"],
    "moving_average_m0": ["objective.eta.mode=moving_average", "objective.eta.momentum=0"],
}


PRECISIONS = {  # the blur's convolutions must keep fp32 under the cache pass's autocast
    "fp32": ["train.precision=fp32"],
    "fp32_cl": ["train.precision=fp32", "train.channels_last=true"],  # the AVX2 default
    "bf16": ["train.precision=bf16"],
    "bf16_blur": ["train.precision=bf16", "data.augment.blur_p=0.5"],
}


@pytest.mark.parametrize(
    ("eta", "precision"),
    [
        *((eta, p) for eta in SIMSIAM_AS_ETA for p in ("fp32", "bf16")),
        *(("cached_k1", p) for p in PRECISIONS if p not in ("fp32", "bf16")),  # cache pass
    ],
)
def test_one_step_alternation_is_simsiam_exactly(tmp_path, eta, precision):
    # the cache pass runs under the training forward's autocast, so bf16 matches too
    sets = PRECISIONS[precision]
    plain = _run(tmp_path / "a", *sets)
    other = _run(tmp_path / "b", *sets, *SIMSIAM_AS_ETA[eta])
    assert plain.sizes["step"] == 8
    np.testing.assert_array_equal(plain["loss"].values, other["loss"].values)
    np.testing.assert_array_equal(plain["knn_top1"].values, other["knn_top1"].values)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    if eta == "cached_k1":  # the targets are this step's own z
        assert (other["eta_age"] == 0).all()
        np.testing.assert_allclose(other["eta_cosine"], 1.0, atol=1e-5)


def _toy():
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=8)).train()
    images = torch.randn(32, 3, 8, 8)
    plan = BatchPlan(32, 8, seed=0)  # 4 steps per epoch

    def load(epoch, batches):
        g = torch.Generator().manual_seed(epoch)
        noise = torch.randn(32, 3, 8, 8, generator=g)
        for b in batches:
            yield images[b] + 0.1 * noise[b], images[b] - 0.1 * noise[b]

    return model, plan, load


def test_cached_targets_fixed_within_the_window_and_refreshed_after():
    model, plan, load = _toy()
    cached = CachedTargets(model, plan, load, k=6, total_steps=100, device=torch.device("cpu"))
    cached.before_step(0)
    first = cached.cache.clone()
    assert first.shape == (32, 2, 8)  # 6 steps over 1.5 epochs: every image once
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    for step in range(1, 6):
        cached.before_step(step)
        assert torch.equal(cached.cache, first)
    cached.before_step(6)
    assert cached.window_start == 6 and not torch.equal(cached.cache, first)
    assert cached.last_drift > 0  # the images overlap both windows


def test_a_window_of_the_same_images_overwrites_its_cache_in_place():
    """k = one epoch: every window holds every image (21 GB at ImageNet), kept once."""
    model, plan, load = _toy()
    cpu = torch.device("cpu")
    cached = CachedTargets(model, plan, load, k=4, total_steps=100, device=cpu)  # k = an epoch
    cached.before_step(0)
    storage, first = cached.cache.data_ptr(), cached.cache.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    cached.before_step(4)
    assert cached.cache.data_ptr() == storage and not torch.equal(cached.cache, first)
    fresh = CachedTargets(model, plan, load, k=4, total_steps=100, device=cpu)
    fresh.before_step(4)  # the same window computed from nothing
    for i in range(32):
        assert torch.equal(cached.cache[cached.rows[i]], fresh.cache[fresh.rows[i]])
    new, old = cached.cache[:, 0], first[:, 0]
    want = (new / new.norm(dim=1, keepdim=True) - old / old.norm(dim=1, keepdim=True)).norm(dim=1)
    assert cached.last_drift == pytest.approx(float(want.mean()), rel=1e-5)


def test_cache_pass_leaves_bn_statistics_untouched():
    model, plan, load = _toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    CachedTargets(model, plan, load, k=4, total_steps=8, device=torch.device("cpu")).before_step(0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_cached_targets_are_the_first_visit_z():
    model, plan, load = _toy()
    cached = CachedTargets(model, plan, load, k=4, total_steps=8, device=torch.device("cpu"))
    cached.before_step(0)
    epoch, batch = plan.batch(2)
    x1, x2 = list(load(epoch, [batch]))[0]
    with torch.no_grad():
        ref = model(x1, x2)
    out, _ = cached.apply(ref, torch.tensor(batch), 2)
    # same weights, same batch -> the cached targets equal this forward's z
    torch.testing.assert_close(out.t1, ref.z1)
    torch.testing.assert_close(out.t2, ref.z2)


def _out(z1, z2):
    return SiameseOutput(z1, z2, z1, z2, z1, z2)


def test_eta_and_momentum_targets_carry_no_graph_by_construction():
    """The providers do not detach (objectives.stop_gradient decides), yet their targets
    have no graph even when the online z has one: they are stored values (cached and
    moving-average eta) or come from frozen weights (the momentum target)."""
    model, plan, load = _toy()
    cached = CachedTargets(model, plan, load, k=4, total_steps=8, device=torch.device("cpu"))
    cached.before_step(0)
    epoch, batch = plan.batch(0)
    x1, x2 = list(load(epoch, [batch]))[0]
    live = model(x1, x2)
    assert live.z1.requires_grad
    table = MovingAverageTargets(EtaTable(32, 8, "float32", "memory"), momentum=0.8)
    for provider in (cached, table):
        out, _ = provider.apply(live, torch.tensor(batch), 0)
        assert out.z1 is live.z1 and out.p1 is live.p1  # the online branch untouched
        assert not out.t1.requires_grad and not out.t2.requires_grad
    t = torch.randn(8, 8)
    assert with_targets(live, t, t).t1 is t  # no detach of its own
    momentum = create_model(
        ModelConfig(backbone="convnet_small", width=4, dim=8, target={"momentum": 0.9})
    )
    out = momentum(x1, x2)
    assert out.z1.requires_grad and out.t1.grad_fn is None and not out.t1.requires_grad


def test_moving_average_update_row_by_row():
    table = EtaTable(10, 3, "float32", "memory")
    ma = MovingAverageTargets(table, momentum=0.8)
    idx = torch.tensor([2, 5])
    z1, z2 = torch.randn(2, 3), torch.randn(2, 3)
    out, _ = ma.apply(_out(z1, z2), idx, step=0)
    torch.testing.assert_close(out.t1, z1)  # first visit initialises: SimSiam targets
    torch.testing.assert_close(table.read(idx), (z1 + z2) / 2)
    eta = table.read(idx)
    w1, w2 = torch.randn(2, 3), torch.randn(2, 3)
    idx2 = torch.tensor([5, 7])  # row 5 seen before, row 7 new
    out, stats = ma.apply(_out(w1, w2), idx2, step=3)
    torch.testing.assert_close(out.t2[0], 0.8 * eta[1] + 0.2 * w2[0])
    torch.testing.assert_close(out.t1[0], 0.8 * eta[1] + 0.2 * w1[0])
    torch.testing.assert_close(out.t1[1], w1[1])
    torch.testing.assert_close(
        table.read(torch.tensor([5]))[0], 0.8 * eta[1] + 0.2 * (w1[0] + w2[0]) / 2
    )
    torch.testing.assert_close(table.read(torch.tensor([2])), eta[:1])  # untouched row
    assert stats["eta_age"] == 3.0
    assert int(table.last_step[5]) == 3 and bool(table.visited[7])


def test_memmap_table_snapshot_and_restore(tmp_path):
    table = EtaTable(100, 4, "float16", "memmap", tmp_path)
    idx = torch.tensor([1, 50, 99])
    table.write(idx, torch.ones(3, 4), step=1)
    state = table.state_dict()
    table.write(idx, torch.full((3, 4), 7.0), step=2)  # after the checkpoint
    restored = EtaTable(100, 4, "float16", "memmap", tmp_path)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.read(idx), torch.ones(3, 4))
    assert restored.visited.sum() == 3


def test_memmap_and_memory_storage_train_identically(tmp_path):
    ma = ["objective.eta.mode=moving_average", "model.predictor.kind=none"]
    memory = _run(tmp_path / "m", *ma)
    memmap = _run(tmp_path / "d", *ma, "objective.eta.storage=memmap")
    xr.testing.assert_equal(memory["loss"], memmap["loss"])
    assert (tmp_path / "d" / "tiny" / "default" / "seed0" / "eta" / "eta.slots.npy").is_file()


@pytest.mark.parametrize(
    "mode",
    [
        ["objective.eta.mode=cached", "objective.eta.k=3"],
        ["objective.eta.mode=moving_average", "objective.eta.storage=memmap"],
    ],
    ids=["cached_k3", "moving_average_memmap"],
)
def test_resume_restores_eta(tmp_path, monkeypatch, mode):
    sets = ["train.epochs=3", *mode]
    full = train_run(tiny_runs(tmp_path / "a", sets=sets)[0], progress=False)
    spec = tiny_runs(tmp_path / "b", sets=sets)[0]
    kill_after_epoch(spec, 1, monkeypatch)  # step 4: inside a k=3 window
    resumed = train_run(spec, progress=False)
    a, b = open_run(full.directory), open_run(resumed.directory)
    xr.testing.assert_equal(a["loss"], b["loss"])
    xr.testing.assert_equal(a["eta_cosine"], b["eta_cosine"])
    wa = load_checkpoint(full.directory / "checkpoints")["model"]
    wb = load_checkpoint(resumed.directory / "checkpoints")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(
    "loader",
    [["data.device_resident=true"], [], PIL_LOADER],
    ids=["resident_memo", "batched_loader", "pil_worker"],
)
def test_a_window_kept_as_its_start_weights_resumes_exactly(tmp_path, monkeypatch, loader):
    """A large cache (an ImageNet epoch: 21 GB) is checkpointed as the weights it came from."""
    monkeypatch.setattr(CachedTargets, "WEIGHTS_WHEN_CACHE_EXCEEDS", 0.0)  # always weights
    sets = ["train.epochs=3", "objective.eta.mode=cached", "objective.eta.k=3", *loader]
    full = train_run(tiny_runs(tmp_path / "a", sets=sets)[0], progress=False)
    spec = tiny_runs(tmp_path / "b", sets=sets)[0]
    kill_after_epoch(spec, 1, monkeypatch)  # step 4: inside the window of steps 3-5
    kept = load_checkpoint(spec.directory() / "checkpoints")["targets"]
    assert kept["window_start"] == 3 and "weights" in kept and "cache" not in kept
    resumed = train_run(spec, progress=False)
    a, b = open_run(full.directory), open_run(resumed.directory)
    for name in ("loss", "eta_cosine", "eta_drift", "knn_top1"):
        xr.testing.assert_equal(a[name], b[name])
    wa = load_checkpoint(full.directory / "checkpoints")["model"]
    wb = load_checkpoint(resumed.directory / "checkpoints")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _writes(tables, steps, generator, rows=64, batch=16, dim=8):
    """The same random batches written into every table of ``tables``."""
    for step in steps:
        idx = torch.randperm(rows, generator=generator)[:batch]
        values = torch.randn(batch, dim, generator=generator)
        for table in tables:
            table.write(idx, values, step)


def _same_table(a, b):
    every = torch.arange(a.rows)
    assert torch.equal(a.visited, b.visited) and torch.equal(a.last_step, b.last_step)
    torch.testing.assert_close(a.read(every), b.read(every), rtol=0, atol=0)


def test_memmap_generations_restore_exactly_after_a_kill(tmp_path):
    """A checkpoint is a generation (flush + slot map): what a killed run wrote after it,
    or while checkpointing, never reaches the rows a resume reads."""
    g = torch.Generator().manual_seed(0)
    table = EtaTable(64, 8, "float16", "memmap", tmp_path)
    mirror = EtaTable(64, 8, "float16", "memory")  # the same writes, never killed
    _writes([table, mirror], range(0, 5), g)
    table.state_dict()
    _writes([table, mirror], range(5, 10), g)
    saved, expected = table.state_dict(), mirror.state_dict()  # generation 2 -> last.pt
    _writes([table], range(10, 17), g)  # then killed before the next checkpoint
    table.state_dict()  # ... or inside it: generation 3 flushed, last.pt not replaced
    resumed = EtaTable(64, 8, "float16", "memmap", tmp_path)  # a new process
    resumed.load_state_dict(saved)
    _same_table(resumed, mirror)
    _writes([resumed, mirror], range(10, 20), g)  # and it continues as the mirror does
    _same_table(resumed, mirror)
    again = EtaTable(64, 8, "float16", "memmap", tmp_path)  # killed again: same checkpoint
    again.load_state_dict(saved)
    mirror.load_state_dict(expected)
    _same_table(again, mirror)


def test_memmap_checkpoint_copies_no_rows(tmp_path):
    table = EtaTable(1000, 8, "float16", "memmap", tmp_path)
    table.write(torch.arange(0, 1000, 7), torch.ones(143, 8), step=0)
    state = table.state_dict()
    assert set(state) == {"visited", "last_step", "generation", "slots"}
    assert state["slots"].shape == (1000,) and state["slots"].dtype == torch.uint8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eta.slots.json", "eta.slots.npy"]


def test_resume_refuses_a_recreated_table(tmp_path):
    table = EtaTable(10, 4, "float16", "memmap", tmp_path)
    table.write(torch.tensor([3]), torch.ones(1, 4), step=0)
    state = table.state_dict()
    for file in tmp_path.iterdir():
        file.unlink()  # e.g. a node-local folder lost with its node
    fresh = EtaTable(10, 4, "float16", "memmap", tmp_path)
    with pytest.raises(ResultsError, match="generation 0, older than the checkpoint's 1"):
        fresh.load_state_dict(state)


def test_unwritten_rows_read_as_zero_in_a_reused_file(tmp_path):
    old = EtaTable(10, 4, "float32", "memmap", tmp_path)
    old.write(torch.arange(10), torch.full((10, 4), 5.0), step=0)
    old.state_dict()
    fresh = EtaTable(10, 4, "float32", "memmap", tmp_path)  # a fresh run, same folder
    fresh.write(torch.tensor([2]), torch.ones(1, 4), step=0)
    expected = torch.zeros(10, 4)
    expected[2] = 1
    torch.testing.assert_close(fresh.read(torch.arange(10)), expected, rtol=0, atol=0)


def test_memmap_resumes_a_checkpoint_of_the_copying_layout(tmp_path):
    """Checkpoints written before the two-slot file held a path to a full copy."""
    values = np.arange(40, dtype=np.float16).reshape(10, 4)
    np.save(tmp_path / "eta.snapshot.npy", values)
    visited = torch.zeros(10, dtype=torch.bool)
    visited[[1, 4]] = True
    state = {
        "visited": visited,
        "last_step": torch.where(visited, 3, -1),
        "snapshot": str(tmp_path / "eta.snapshot.npy"),
    }
    table = EtaTable(10, 4, "float16", "memmap", tmp_path / "eta")
    table.load_state_dict(state)
    rows = torch.tensor([1, 4])
    torch.testing.assert_close(table.read(rows), torch.from_numpy(values[[1, 4]]).float())
    table.write(rows, torch.zeros(2, 4), step=4)  # then continues in the new layout
    resumed = EtaTable(10, 4, "float16", "memmap", tmp_path / "eta")
    resumed.load_state_dict(table.state_dict())
    _same_table(resumed, table)


def test_gather_and_write_keep_the_batch_order():
    table = EtaTable(20, 3, "float32", "memory")
    idx = torch.tensor([17, 2, 9, 0])  # unsorted, as the sampler gives them
    values = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    table.write(idx, values, step=0)
    torch.testing.assert_close(table.read(idx), values, rtol=0, atol=0)
    torch.testing.assert_close(table.read(torch.tensor([9, 17])), values[[2, 0]])
    with pytest.raises(ValueError, match="twice"):
        table.write(torch.tensor([1, 1]), torch.zeros(2, 3), step=1)


class _Marks:
    def __init__(self):
        self.calls = 0

    def state_dict(self):
        self.calls += 1
        return {"calls": self.calls}

    def load_state_dict(self, state):
        pass


def test_every_rank_part_marks_its_generation_on_other_ranks(tmp_path):
    """Under torchrun every rank's table switches generation; only rank 0 saves."""
    every, main_only = _Marks(), _Marks()
    parts = [Part("targets", every, every_rank=True), Part("model", main_only)]
    Checkpointer(tmp_path, {}, parts, results=None, dist=DistInfo(1, 2)).save(4, "running")
    assert every.calls == 1 and main_only.calls == 0
    assert not (tmp_path / "checkpoints").exists()  # rank 1 writes no last.pt


def test_moving_average_provider_asks_every_rank_for_a_memmap_checkpoint(tmp_path):
    memmap = MovingAverageTargets(EtaTable(4, 2, "float16", "memmap", tmp_path), 0.8)
    memory = MovingAverageTargets(EtaTable(4, 2, "float16", "memory"), 0.8)
    assert memmap.every_rank_state and not memory.every_rank_state
