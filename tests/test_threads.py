"""A CPU run's thread count: recorded, restored between runs, and kept on resume.

On a CPU the kernels split their sums by thread, so a run trained with 1 thread and
one trained with 2 differ in float rounding (README, Speed). A resumed run equals an
uninterrupted one only with the same count, so the checkpoint records it and a resume
with ``train.threads`` unset continues on it.
"""

import pytest
import torch

from siamlab.results.run_notes import run_notes
from siamlab.results.store import open_run, open_study, write_run
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.config import TrainConfig
from siamlab.train.device import configure_torch, default_threads, set_default_threads
from tests.conftest import kill_after_epoch, make_run, tiny_runs
from tests.test_reliability import _assert_same_run

CPU = torch.device("cpu")


def test_a_cpu_run_records_its_threads(tmp_path):
    outcome = train_run(tiny_runs(tmp_path, sets=["train.max_steps=2"])[0], progress=False)
    attrs = open_run(outcome.directory).attrs
    assert attrs["device"] == "cpu" and attrs["threads"] == 1  # the tiny runs' train.threads
    assert load_checkpoint(outcome.directory / "checkpoints")["threads"] == 1
    study = open_study(tmp_path / "tiny")
    assert study["threads"].item() == 1 and study["device"].item() == "cpu"


def test_a_run_without_threads_does_not_inherit_the_previous_runs(tmp_path):
    default = default_threads()
    try:
        configure_torch(TrainConfig(threads=default + 1))
        assert torch.get_num_threads() == default + 1
        configure_torch(TrainConfig())  # the next run of a study, threads unset
        assert torch.get_num_threads() == default
    finally:
        torch.set_num_threads(default)


def test_a_resume_with_threads_unset_continues_on_the_checkpoints_count(tmp_path, monkeypatch):
    default = default_threads()
    spec = tiny_runs(tmp_path, sets=["train.epochs=2", "train.threads=null"])[0]
    kill_after_epoch(spec, 1, monkeypatch)  # trained on torch's default count
    monkeypatch.setattr("siamlab.train.device.default_threads", lambda: default + 1)
    try:  # another machine's default, say
        assert train_run(spec, progress=False).status == "finished"
        assert torch.get_num_threads() == default  # the checkpoint's count, not default + 1
        assert open_run(spec.directory()).attrs["threads"] == default
    finally:
        torch.set_num_threads(default)


def test_a_run_started_on_a_set_count_resumes_on_it_with_threads_unset(tmp_path, monkeypatch):
    """How a run of ``--launcher local`` (before it stopped writing the count into the
    configs) or of ``--set train.threads=1`` resumes without the flag: not refused."""
    default = default_threads()
    reference = tiny_runs(tmp_path / "whole", sets=["train.epochs=2"])[0]  # threads=1
    train_run(reference, progress=False)
    started = tiny_runs(tmp_path / "cut", sets=["train.epochs=2"])[0]
    kill_after_epoch(started, 1, monkeypatch)
    resumed = tiny_runs(tmp_path / "cut", sets=["train.epochs=2", "train.threads=null"])[0]
    monkeypatch.setattr("siamlab.train.device.default_threads", lambda: default + 1)
    try:
        assert train_run(resumed, progress=False).status == "finished"
        assert open_run(resumed.directory()).attrs["threads"] == 1
    finally:
        torch.set_num_threads(default)
    _assert_same_run(reference.directory(), resumed.directory(), ("loss", "z_std_train"))


def test_a_resume_on_another_set_count_warns_that_it_is_inexact(tmp_path, monkeypatch):
    default = default_threads()
    started = tiny_runs(tmp_path, sets=["train.epochs=2"])[0]  # threads=1
    kill_after_epoch(started, 1, monkeypatch)
    resumed = tiny_runs(tmp_path, sets=["train.epochs=2", "train.threads=2"])[0]
    try:
        with pytest.warns(UserWarning, match="trained on 1 CPU threads.*float rounding"):
            assert train_run(resumed, progress=False).status == "finished"
        assert open_run(resumed.directory()).attrs["threads"] == 2
    finally:
        torch.set_num_threads(default)


def test_the_default_count_is_what_runs_with_threads_unset_get():
    """The local launcher's jobs split the cores by setting it (siamlab.launch.task)."""
    default = default_threads()
    try:
        set_default_threads(default + 1)
        configure_torch(TrainConfig(threads=default))
        configure_torch(TrainConfig())
        assert torch.get_num_threads() == default + 1 == default_threads()
    finally:
        set_default_threads(default)
    assert torch.get_num_threads() == default == default_threads()


def test_a_checkpoint_without_a_thread_count_resumes(tmp_path, monkeypatch):
    spec = tiny_runs(tmp_path, sets=["train.epochs=2"])[0]
    kill_after_epoch(spec, 1, monkeypatch)
    folder = spec.directory() / "checkpoints"
    state = load_checkpoint(folder)
    del state["threads"]  # what a checkpoint of siamlab before 2026-12-04 holds
    save_checkpoint(folder, state)
    assert train_run(spec, progress=False).status == "finished"


def test_compare_notes_cpu_runs_on_different_thread_counts(tmp_path):
    for seed, (device, threads) in enumerate((("cpu", 1), ("cpu", 2), ("cuda", 8), ("", 0))):
        make_run(tmp_path, "good", seed)
        run_dir = tmp_path / "toy" / "good" / f"seed{seed}"
        ds = open_run(run_dir)
        if device:  # seed 3: a file from before the attrs
            ds.attrs.update(device=device, threads=threads)
        write_run(run_dir, ds)
    notes = " ".join(run_notes(open_study(tmp_path / "toy")))
    assert "different thread counts (1: good/seed0; 2: good/seed1)" in notes  # not the GPU run
    ds = open_run(tmp_path / "toy" / "good" / "seed1")
    ds.attrs["threads"] = 1
    write_run(tmp_path / "toy" / "good" / "seed1", ds)
    assert "thread" not in " ".join(run_notes(open_study(tmp_path / "toy")))
