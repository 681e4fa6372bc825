"""A CPU run's thread count: recorded, restored between runs, and kept on resume.

On a CPU the kernels split their sums by thread, so a run trained with 1 thread and
one trained with 2 differ in float rounding (README, Speed). A resumed run equals an
uninterrupted one only with the same count, so the checkpoint records it and a resume
with ``train.threads`` unset continues on it.
"""

import torch

from siamlab.results.run_notes import run_notes
from siamlab.results.store import open_run, open_study, write_run
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.config import TrainConfig
from siamlab.train.device import configure_torch, default_threads
from tests.conftest import kill_after_epoch, make_run, tiny_runs

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
