"""Killed runs resume exactly, divergence is caught, writes are atomic, nothing is lost."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from siamlab.atomic import atomic_write
from siamlab.diagnostics.verdict import VERDICTS
from siamlab.errors import ResultsError
from siamlab.preemption import EXIT_PREEMPTED
from siamlab.results.runlock import RunLockedError, run_lock
from siamlab.results.store import open_run, write_run
from siamlab.run.train_run import train_run
from siamlab.study.execute import run_study
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import PIL_LOADER, TINY, tiny_runs

REPO = Path(__file__).resolve().parents[1]


def _study_file(tmp_path: Path, sets: list[str]) -> tuple[Path, list[str]]:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "variants": {"default": {}}}))
    args = [a for s in [*TINY, f"output.root={tmp_path / 'out'}", *sets] for a in ("--set", s)]
    return path, args


def _spawn(study: Path, args: list[str], new_session: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "siamlab", "run", str(study), "--no-progress", *args]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


# What the verdict recorded per epoch, and its inputs: a resume must reproduce them too
# (the judge's within-run state -- step losses, start loss, past epochs -- is checkpointed).
VERDICT_VARS = (
    "verdict",
    "verdict_evidence",
    "run_verdict",
    "run_verdict_onset_epoch",
    "run_verdict_evidence",
    "run_verdict_provisional",
    "cosine_loss",
    "start_loss",
    "loss_jitter",
    "loss_noise",
    "z_residual_norm",
    "z_residual_erank_fraction",
)


def _assert_same_run(a_dir: Path, b_dir: Path, names: tuple[str, ...]) -> None:
    a, b = open_run(a_dir), open_run(b_dir)
    for name in (*names, *VERDICT_VARS):
        xr.testing.assert_equal(a[name], b[name])
    verdict_attrs = {k for k in a.attrs if k.startswith("verdict")}
    assert {"verdict", "verdict_onset_epoch", "verdict_evidence"} <= verdict_attrs
    assert a.attrs["verdict"] in VERDICTS  # judged (not "")
    for key in verdict_attrs:
        assert a.attrs[key] == b.attrs.get(key), key
    wa = load_checkpoint(a_dir / "checkpoints")["model"]
    wb = load_checkpoint(b_dir / "checkpoints")["model"]
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


SETS = ["train.epochs=4", "data.train_limit=512", *PIL_LOADER]  # 8 steps per epoch


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run of SETS that the killed and stopped runs must equal."""
    runs = tiny_runs(tmp_path_factory.mktemp("uninterrupted"), sets=SETS)
    return train_run(runs[0], progress=False).directory


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, reference):
    study, args = _study_file(tmp_path, SETS)
    proc = _spawn(study, args)
    run_dir = tmp_path / "out" / "tiny" / "default" / "seed0"
    _wait_for(run_dir / "checkpoints" / "last.pt", proc)  # epoch 1 written, epoch 2 running
    _wait_for(run_dir / "metrics.nc", proc)  # written right after the checkpoint
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert open_run(run_dir).attrs["status"] == "running"  # results of the last checkpoint
    rerun = _spawn(study, args)
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read().decode()
    _assert_same_run(
        reference, run_dir, ("loss", "z_std_train", "knn_top1", "z_std_eval", "epoch_loss")
    )


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_and_resumes_exactly(tmp_path, reference):
    sets = [*SETS, "train.checkpoint_every_steps=3"]  # the reference checkpoints per epoch
    study, args = _study_file(tmp_path, sets)
    proc = _spawn(study, args)
    run_dir = tmp_path / "out" / "tiny" / "default" / "seed0"
    _wait_for(run_dir / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_PREEMPTED
    stopped = open_run(run_dir)
    assert stopped.attrs["status"] == "preempted"
    state = load_checkpoint(run_dir / "checkpoints")
    assert state["step"] == stopped.sizes["step"]  # checkpoint and results agree
    rerun = _spawn(study, args)
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read().decode()
    _assert_same_run(reference, run_dir, ("loss", "z_std_train", "knn_top1", "lr", "epoch_loss"))


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_loader_workers_is_a_clean_stop(tmp_path):
    """Slurm preempts with SIGTERM to every process of the job, Ctrl-C signals the whole
    foreground group: the loader workers must leave the stop to the main process."""
    study, args = _study_file(tmp_path, [*SETS, "data.num_workers=1"])
    proc = _spawn(study, args, new_session=True)
    run_dir = tmp_path / "out" / "tiny" / "default" / "seed0"
    _wait_for(run_dir / "checkpoints" / "last.pt", proc)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, proc.stdout.read().decode()
    assert open_run(run_dir).attrs["status"] == "preempted"


def test_divergence_marks_the_run_and_the_study_goes_on(tmp_path):
    runs = tiny_runs(
        tmp_path,
        variants={"blowup": {"optim": {"base_lr": 1e30}}, "fine": {}},
        sets=["train.epochs=2"],
    )
    reports = run_study(runs, progress=False, log=lambda _: None)
    assert [r.status for r in reports] == ["diverged", "finished"]
    ds = open_run(runs[0].directory())
    assert ds.attrs["status"] == "diverged" and ds.attrs["diverged_step"] >= 1
    assert ds.attrs["verdict"] == "unstable" and ds.attrs["verdict_provisional"] == 0
    assert f"at step {ds.attrs['diverged_step']}" in ds.attrs["verdict_evidence"]
    assert np.isfinite(ds["loss"]).all()  # only the good steps are recorded


def test_a_second_claim_on_the_same_run_is_refused_with_the_holder(tmp_path):
    run = tmp_path / "study" / "v" / "seed0"
    with (
        run_lock(run),
        pytest.raises(RunLockedError, match=rf"another siamlab process \(pid {os.getpid()} on"),
        run_lock(run),
    ):
        pass
    with run_lock(run), run_lock(tmp_path / "study" / "v" / "seed1"):  # released; other runs free
        pass


def test_unwritable_results_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsError, match="cannot write to the results folder"):
        run_study(tiny_runs(blocker), progress=False, log=lambda _: None)


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from siamlab.atomic import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:
            for _ in range(10_000):
                fh.write(b"new" * 1000)
                fh.flush()
                time.sleep(0.001)

    atomic_write(sys.argv[1], write)
    """
)


def test_killed_writer_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "metrics.nc"
    target.write_bytes(b"previous complete file")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)])
    t0 = time.time()
    while not list(tmp_path.glob(".metrics.nc.tmp-*")):
        assert time.time() - t0 < 60
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert target.read_bytes() == b"previous complete file"


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _hdf_error(*args, **kwargs):
    raise RuntimeError("NetCDF: HDF error")


def test_disk_full_keeps_previous_results_and_checkpoint(tmp_path, monkeypatch):
    spec = tiny_runs(tmp_path, sets=["train.max_steps=2"])[0]
    done = train_run(spec, progress=False)
    before_nc = (done.directory / "metrics.nc").read_bytes()
    before_ckpt = (done.directory / "checkpoints" / "last.pt").read_bytes()
    ds = open_run(done.directory)
    monkeypatch.setattr("xarray.Dataset.to_netcdf", _disk_full)
    with pytest.raises(ResultsError, match="No space left on device.*previous file"):
        write_run(done.directory, ds)
    monkeypatch.setattr("xarray.Dataset.to_netcdf", _hdf_error)  # netCDF4's way of saying it
    with pytest.raises(ResultsError, match="HDF error.*previous file.*free disk space"):
        write_run(done.directory, ds)
    monkeypatch.setattr("torch.save", _disk_full)
    with pytest.raises(ResultsError, match="No space left on device"):
        save_checkpoint(done.directory / "checkpoints", {"x": 1})
    assert (done.directory / "metrics.nc").read_bytes() == before_nc
    assert (done.directory / "checkpoints" / "last.pt").read_bytes() == before_ckpt
    assert not list(done.directory.rglob(".*.tmp-*"))  # no temp files left behind


def test_results_lost_after_the_last_checkpoint_are_written_by_the_rerun(tmp_path, monkeypatch):
    """The disk filled between the last checkpoint and its results: a rerun writes them."""
    from siamlab.run import results_file

    sets = ["train.epochs=2", "train.checkpoint_every_epochs=1"]
    (spec,) = tiny_runs(tmp_path / "a", sets=sets)
    whole = open_run(train_run(spec, progress=False).directory)
    real = results_file.write_run

    def full_at_the_end(folder, ds):
        if ds.attrs["status"] == "finished":
            raise ResultsError("No space left on device; the previous file is kept")
        real(folder, ds)

    (cut,) = tiny_runs(tmp_path / "b", sets=sets)
    monkeypatch.setattr(results_file, "write_run", full_at_the_end)
    with pytest.raises(ResultsError, match="No space left"):
        train_run(cut, progress=False)
    monkeypatch.setattr(results_file, "write_run", real)
    assert open_run(cut.directory()).attrs["status"] == "running"  # epoch 1's results
    assert [r.status for r in run_study([cut], progress=False, log=lambda _: None)] == ["finished"]
    again = open_run(cut.directory())
    assert again.attrs["status"] == "finished" and again.sizes == whole.sizes
    for name in ("loss", "z_std_eval", "knn_top1"):
        np.testing.assert_array_equal(again[name].values, whole[name].values)


def test_a_corrupt_results_file_says_what_to_do_and_a_rerun_rewrites_it(tmp_path):
    from siamlab.study.status import study_status

    (spec,) = tiny_runs(tmp_path, sets=["train.max_steps=2"])
    whole = open_run(train_run(spec, progress=False).directory)
    metrics = spec.directory() / "metrics.nc"
    metrics.write_bytes(metrics.read_bytes()[:300])  # a copy cut short
    with pytest.raises(ResultsError, match="Re-running its study rewrites it from the run's last"):
        open_run(spec.directory())
    assert [r.state for r in study_status(spec.directory().parent.parent)] == ["unreadable"]
    assert [r.status for r in run_study([spec], progress=False, log=lambda _: None)] == ["finished"]
    np.testing.assert_array_equal(open_run(spec.directory())["loss"].values, whole["loss"].values)


def test_atomic_write_replaces_completely(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, lambda tmp: tmp.write_text("one"))
    atomic_write(target, lambda tmp: tmp.write_text("two"))
    assert target.read_text() == "two" and len(list(tmp_path.iterdir())) == 1


def _folder(tmp_path: Path, good: int, bad: int) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        cls = tmp_path / split / "a"
        cls.mkdir(parents=True)
        for i in range(good):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(cls / f"{i:03d}.png")
        for i in range(bad):
            (cls / f"{good + i:03d}.png").write_bytes(b"not an image")
    return tmp_path


def test_corrupt_images_are_skipped_with_a_count_then_fail(tmp_path):
    from siamlab.data.build import build_datasets
    from siamlab.data.config import DataConfig
    from siamlab.errors import DataError

    root = _folder(tmp_path / "few", good=30, bad=1)
    cfg = DataConfig(dataset="imagefolder", root=str(root), image_size=8, max_corrupt_fraction=0.1)
    data = build_datasets(cfg, seed=0)
    with pytest.warns(UserWarning, match=r"skipped \(1 so far\).*030.png"):
        views = [data.train_views[i] for i in range(len(data.train_views))]
    assert len(views) == 31 and all(v[0].shape == (3, 8, 8) for v in views)

    root = _folder(tmp_path / "many", good=5, bad=5)
    many = DataConfig(dataset="imagefolder", root=str(root), image_size=8, max_corrupt_fraction=0.1)
    data = build_datasets(many, seed=0)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="dataset looks damaged"):
        for i in range(len(data.train_views)):
            data.train_views[i]


class _SigtermDisposition(torch.utils.data.Dataset):
    """Reports, from inside the loader worker, whether SIGTERM is ignored there."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)


def test_training_loader_workers_ignore_sigterm():
    from siamlab.data.config import DataConfig
    from siamlab.data.loader import train_loader

    cfg = DataConfig(num_workers=1)
    loader = train_loader(cfg, _SigtermDisposition(), [[0], [1]], torch.device("cpu"))  # type: ignore[arg-type]
    assert [bool(b) for b in loader] == [True, True]
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN  # the main process keeps its own


class _State:
    """A per-process part: one number."""

    def __init__(self, value: int) -> None:
        self.value = value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class _NoResults:
    def write(self, status: str) -> None:
        pass


def test_per_process_files_belong_to_the_checkpoint_that_names_their_step(tmp_path, monkeypatch):
    """Killed while last.pt is written: the older last.pt resumes with its own rank files."""
    from siamlab.run import checkpointer as ckpt
    from siamlab.run.checkpointer import Checkpointer, Part
    from siamlab.train.distributed import DistInfo

    part = _State(3)
    two = Checkpointer(tmp_path, {}, [Part("targets", part, per_rank=True)], _NoResults(),
                       DistInfo(rank=0, world_size=2))  # fmt: skip
    two.save(3, "running")
    part.value = 6
    monkeypatch.setattr(ckpt, "save_checkpoint", _disk_full)  # the kill comes here
    with pytest.raises(ResultsError, match="cannot write the checkpoint.*No space left"):
        two.save(6, "running")
    monkeypatch.undo()
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("targets-*")) == [
        "targets-rank0-step3.pt",
        "targets-rank0-step6.pt",
    ]
    state = load_checkpoint(folder)
    assert state["step"] == 3 and two.restore(state) == 3 and part.value == 3  # not 6
    two.save(9, "running")  # a later checkpoint removes the older files
    assert [p.name for p in folder.glob("targets-*")] == ["targets-rank0-step9.pt"]
    one = Checkpointer(tmp_path, {}, [Part("targets", part, per_rank=True)], _NoResults(),
                       DistInfo(rank=0, world_size=1))  # fmt: skip
    with pytest.raises(ResultsError, match="written by 2 process.*torchrun --nproc-per-node 2"):
        one.restore(load_checkpoint(folder))
