"""Two processes (torchrun, gloo on CPU) equal one: results do not depend on the world size."""

import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from siamlab.eta.table import EtaTable
from siamlab.results.store import open_run
from siamlab.train.checkpoint import load_checkpoint
from siamlab.train.distributed import sum_over_ranks
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
# 4 steps of 64 per epoch; fp32: bf16's rounding depends on the shape of each rank's share
# (the epochs are the study's: 2, and 3 for the memmap table)
SETS = [*(s for s in TINY if not s.startswith("train.epochs=")), "data.train_limit=256"]
SETS += ["train.precision=fp32"]
WARNING_LINE = re.compile(r"\w*Warning\b|deprecated", re.IGNORECASE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Three runs, trained by one 1-process and one 2-process launch of one study (each
# launch pays the imports once): the SimSiam step, the moving-average eta table in memory,
# and in a memmap file whose generation both ranks switch at every checkpoint.
ETA_MA = {
    "objective": {"eta": {"mode": "moving_average"}},
    "model": {"predictor": {"kind": "none"}},
}
VARIANTS = {
    "simsiam": {},
    "eta_rows": ETA_MA,
    "eta_memmap": {
        "train": {"epochs": 3, "checkpoint_every_epochs": 1},
        "objective": {"eta": {"mode": "moving_average", "storage": "memmap"}},
        "model": {"predictor": {"kind": "none"}},
    },
}


def _run(tmp_path: Path, nproc: int) -> Path:
    """Train the study's runs on ``nproc`` processes; the study's results folder."""
    study = tmp_path / "tiny.yaml"
    spec = {"name": "tiny", "base": {"train": {"epochs": 2}}, "variants": VARIANTS}
    study.write_text(yaml.safe_dump(spec))
    root = tmp_path / f"out{nproc}"
    args = [a for s in [*SETS, f"output.root={root}"] for a in ("--set", s)]
    cli = ["-m", "siamlab", "run", str(study), "--no-progress", *args]
    if nproc == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            *cli,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    warned = [line for line in output.splitlines() if WARNING_LINE.search(line)]
    assert not warned, f"{nproc}-process run printed warnings:\n" + "\n".join(warned[:10])
    return root / "tiny"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[int, Path]:
    """The study's results folder, by process count."""
    tmp = tmp_path_factory.mktemp("ddp")
    return {nproc: _run(tmp, nproc) for nproc in (1, 2)}


def _runs(trained: dict[int, Path], variant: str) -> tuple[Path, Path]:
    return trained[1] / variant / "seed0", trained[2] / variant / "seed0"


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.slow
def test_two_processes_equal_one(trained):
    one, two = _runs(trained, "simsiam")
    a, b = open_run(one), open_run(two)
    assert b.attrs["world_size"] == 2 and b.attrs["status"] == "finished"
    # the all-reduce sums the gradients in another order; its rounding grows over the steps
    # (1.6e-6 at step 6 of the batched views), and a loss near 0 has no relative precision
    _close(a["loss"].values, b["loss"].values, atol=1e-5)
    _close(a["z_std_train"].values, b["z_std_train"].values)  # global batch, gathered
    _close(a["z_std_eval"].values, b["z_std_eval"].values)
    assert np.array_equal(a["knn_top1"].values, b["knn_top1"].values)
    wa = load_checkpoint(one / "checkpoints")["model"]
    wb = load_checkpoint(two / "checkpoints")["model"]
    for key, value in wa.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, wb[key], rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(value, wb[key]), key


@pytest.mark.slow
def test_two_processes_update_the_same_eta_rows(trained):
    one, two = _runs(trained, "eta_rows")
    ta = load_checkpoint(one / "checkpoints")["targets"]["table"]
    tb = load_checkpoint(two / "checkpoints")["targets"]["table"]
    assert torch.equal(ta["visited"], tb["visited"])
    assert torch.equal(ta["last_step"], tb["last_step"])
    torch.testing.assert_close(ta["values"], tb["values"], rtol=1e-4, atol=1e-4)
    _close(open_run(one)["loss"].values, open_run(two)["loss"].values, rtol=1e-4)


@pytest.mark.slow
def test_two_processes_share_a_memmap_table_across_generations(trained):
    """Both ranks switch the table's generation at every checkpoint (after each epoch),
    so epoch 3 reads what rank 0 wrote in epoch 2: a rank left on the old slot map would
    read epoch 1's rows."""
    one, two = _runs(trained, "eta_memmap")
    _close(open_run(one)["loss"].values, open_run(two)["loss"].values, rtol=1e-4)
    every = torch.arange(256)
    tables = []
    for run, folder in ((one, one / "eta"), (two, two / "eta" / "node0")):
        state = load_checkpoint(run / "checkpoints")
        table = EtaTable(256, 64, "float32", "memmap", folder)
        table.load_state_dict(state["targets"]["table"])
        assert state["targets"]["table"]["generation"] == 3
        tables.append(table.read(every))
    torch.testing.assert_close(tables[0], tables[1], rtol=1e-4, atol=1e-4)


def _sum_worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    x = (torch.tensor([1.0, 2.0]) * (rank + 1)).requires_grad_()
    weights = torch.tensor([1.0, 10.0]) * (rank + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = sum_over_ranks(x)
        (y * weights).sum().backward()
    assert x.grad is not None
    result = {"y": y.detach(), "grad": x.grad, "warnings": [str(w.message) for w in caught]}
    torch.save(result, f"{out}{rank}.pt")
    dist.destroy_process_group()


def test_sum_over_ranks_sums_values_and_gradients_without_warnings(tmp_path):
    """Forward: x_0 + x_1. Rank r's loss is w_r . y, so every x_r gets w_0 + w_1 as gradient."""
    init, out = f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "rank")
    mp.spawn(_sum_worker, args=(init, out), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(f"{out}{rank}.pt")
        torch.testing.assert_close(got["y"], torch.tensor([3.0, 6.0]))
        torch.testing.assert_close(got["grad"], torch.tensor([3.0, 30.0]))
        assert got["warnings"] == [], got["warnings"]


def test_sum_over_ranks_alone_is_identity():
    x = torch.randn(3, requires_grad=True)
    assert sum_over_ranks(x) is x


def test_ddp_is_told_not_to_sync_buffers_by_the_keyword_its_torch_knows(monkeypatch):
    """torch >= 2.13 names it ``forward_sync_buffers``; an older torch (a GPU image's)
    knows only ``broadcast_buffers`` and refuses the other."""
    from torch import nn

    from siamlab.train import distributed

    assert distributed._no_forward_buffer_sync() == {"forward_sync_buffers": False}

    class OldDDP(nn.Module):
        def __init__(self, module, device_ids=None, broadcast_buffers=True) -> None:
            super().__init__()

    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", OldDDP)
    assert distributed._no_forward_buffer_sync() == {"broadcast_buffers": False}


def test_the_cpu_cross_process_bn_keeps_the_parameters_and_what_trains():
    """A frozen head (Table 1 b's fixed random predictor) stays frozen once converted."""
    from torch import nn

    from siamlab.train.distributed import CrossProcessBatchNorm, convert_batchnorm

    head = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())
    for p in head.parameters():
        p.requires_grad_(False)
    head[1].running_mean.fill_(0.5)
    head.eval()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    before = head(x)
    bn = head[1]
    converted = convert_batchnorm(head, "cpu")
    assert isinstance(converted[1], CrossProcessBatchNorm) and not converted.training
    assert converted[1].weight is bn.weight and converted[1].running_mean is bn.running_mean
    assert not any(p.requires_grad for p in converted.parameters())
    assert torch.equal(converted(x), before)  # one process: the plain BN


def _as_torchrun_rank(rank: int, port: int) -> None:
    """This spawned process's environment as torchrun sets it for rank ``rank`` of 2."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"})
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def _join_within(procs, hung: str, seconds: float = 60) -> None:
    """Wait for spawned ``procs``; kill them and fail with ``hung`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not procs.join(timeout=1):
        if time.monotonic() > deadline:
            for process in procs.processes:
                process.kill()
            pytest.fail(hung)


def _checkpoint_worker(rank: int, init: str, folder: str) -> None:
    from siamlab.errors import ResultsError
    from siamlab.run import checkpointer as ckpt
    from siamlab.train.distributed import DistInfo

    class Part:
        def state_dict(self) -> dict:
            return {"rank": rank}

        def load_state_dict(self, state: dict) -> None:
            pass

    class NoResults:
        def write(self, status: str) -> None:
            pass

    def disk_full(*args, **kwargs):
        raise ResultsError("No space left on device")

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    parts = [ckpt.Part("targets", Part(), per_rank=True)]
    saver = ckpt.Checkpointer(Path(folder), {}, parts, NoResults(), DistInfo(rank, 2))
    saver.save(1, "running")
    ckpt.save_checkpoint = disk_full  # rank 0's last.pt cannot be written
    try:
        saver.save(2, "running")
        said = "no error"
    except ResultsError as exc:
        said = str(exc)
    Path(folder, f"said{rank}").write_text(said)
    dist.destroy_process_group()


def test_a_checkpoint_that_rank_0_cannot_write_fails_every_rank_instead_of_hanging(tmp_path):
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = mp.spawn(_checkpoint_worker, args=(init, str(tmp_path)), nprocs=2, join=False)
    _join_within(procs, "a rank hung waiting for the other")
    assert (tmp_path / "said0").read_text() == "No space left on device"
    assert "another process could not write" in (tmp_path / "said1").read_text()
    state = load_checkpoint(tmp_path / "checkpoints")
    assert state["step"] == 1  # the previous checkpoint, with its rank files
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("targets-*")) == [
        "targets-rank0-step1.pt", "targets-rank0-step2.pt",
        "targets-rank1-step1.pt", "targets-rank1-step2.pt",
    ]  # fmt: skip


def _bf16_bn_worker(rank: int, init: str, out: str) -> None:
    from siamlab.train.distributed import CrossProcessBatchNorm

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    x = _bf16_batch()
    y = CrossProcessBatchNorm(16).train()(x[rank * 32 : (rank + 1) * 32])
    torch.save(y.detach(), f"{out}{rank}.pt")
    dist.destroy_process_group()


def _bf16_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(64, 16, 4, 4, generator=g) * 3 + 5).bfloat16()  # (B, C, H, W)


def test_the_cpu_cross_process_bn_on_bf16_is_as_exact_as_torchs_bn_on_the_whole_batch(tmp_path):
    """bf16 activations (autocast): the statistics are taken in fp32, the output is bf16."""
    init, out = f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "rank")
    mp.spawn(_bf16_bn_worker, args=(init, out), nprocs=2, join=True)
    y = torch.cat([torch.load(f"{out}{rank}.pt") for rank in range(2)])
    x = _bf16_batch()
    with torch.no_grad():
        exact = nn.BatchNorm2d(16).train()(x.float())
        native = nn.BatchNorm2d(16).train()(x)  # one process, the whole batch
    assert y.dtype == native.dtype == torch.bfloat16
    error, native_error = ((t.float() - exact).abs().max() for t in (y, native))
    assert error <= native_error * 1.01, (error, native_error)


def _failing_rank_worker(rank: int, port: int, out: str) -> None:
    from siamlab.study import execute
    from tests.conftest import tiny_runs

    _as_torchrun_rank(rank, port)

    def one_rank_fails(spec, progress=True, should_stop=None):
        if rank == 1:
            raise RuntimeError("rank 1's disk")
        dist.barrier()  # rank 0 waits in a collective of the same run
        raise AssertionError("unreachable: rank 1 never joins")

    execute.train_run = one_rank_fails
    runs = tiny_runs(Path(out), variants={"a": {}, "b": {}})
    execute.run_study(runs, progress=False, log=lambda _: None)


def test_a_run_failing_on_one_rank_ends_the_job_instead_of_leaving_the_others_waiting(
    tmp_path,
):
    """torchrun stops the other processes when one ends; a rerun resumes the study."""
    procs = mp.spawn(_failing_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False)
    with pytest.raises(mp.ProcessRaisedException, match="rank 1's disk"):  # spawn stops rank 0
        _join_within(procs, "rank 1 went on to the next run while rank 0 waited in the first")


def _one_rank_signalled_worker(rank: int, port: int, out: str) -> None:
    from siamlab.run.train_run import RunOutcome
    from siamlab.study import execute
    from tests.conftest import tiny_runs

    _as_torchrun_rank(rank, port)

    def trained(spec, progress=True, should_stop=None):
        if rank == 0:
            should_stop.signal = 15  # SIGTERM reached rank 0 alone, at the run's end
        return RunOutcome("finished", spec.directory(), {})

    execute.train_run = trained
    runs = tiny_runs(Path(out), variants={"a": {}, "b": {}})
    reports = execute.run_study(runs, progress=False, log=lambda _: None)
    Path(out, f"rank{rank}").write_text(" ".join(r.status for r in reports))


def test_a_stop_signal_to_one_rank_stops_every_rank_before_the_next_run(tmp_path):
    procs = mp.spawn(
        _one_rank_signalled_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False
    )
    _join_within(procs, "rank 1 went on to the next run while rank 0 stopped")
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["finished not started"] * 2
