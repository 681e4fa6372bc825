"""A CPU run's thread count: recorded, restored between runs, and held on resume.

On a CPU the kernels split their sums by thread, so a run trained with 1 thread and
one trained with 2 differ in float rounding (README, Speed). A resumed run equals an
uninterrupted one only with the same count, so the checkpoint records it.
"""

import pytest
import torch

from siamlab.errors import ResultsError
from siamlab.results.run_notes import run_notes
from siamlab.results.store import open_run, open_study, write_run
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.config import TrainConfig
from siamlab.train.device import configure_torch, default_threads
from siamlab.train.speed import resolve_speed
from tests.conftest import make_run, tiny_runs

CPU = torch.device("cpu")


def test_a_cpu_run_resolves_and_records_its_threads(tmp_path):
    configure_torch(TrainConfig())  # threads None: torch's default
    assert resolve_speed(TrainConfig(), CPU).threads == default_threads()
    assert resolve_speed(TrainConfig(threads=3), CPU).threads == 3
    outcome = train_run(tiny_runs(tmp_path, sets=["train.max_steps=2"])[0], progress=False)
    attrs = open_run(outcome.directory).attrs
    assert attrs["device"] == "cpu" and attrs["threads"] == 1  # the tiny runs' train.threads
    assert "threads: 1" in attrs["config"]
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


def test_resume_with_another_thread_count_is_refused_and_says_how(tmp_path):
    default = default_threads()
    # unset, as in a user's config: the run trains with (and records) torch's default
    train_run(tiny_runs(tmp_path, sets=["train.max_steps=2", "train.threads=null"])[0], False)
    other = tiny_runs(tmp_path, sets=["train.max_steps=2", f"train.threads={default + 1}"])[0]
    try:
        with pytest.raises(ResultsError) as caught:
            train_run(other, progress=False)
    finally:
        torch.set_num_threads(default)
    message = str(caught.value)
    assert f"train.threads: {default} -> {default + 1}" in message
    assert f"--set train.threads={default}" in message and "exactly" in message


def test_a_checkpoint_from_before_the_count_was_recorded_resumes(tmp_path):
    spec = tiny_runs(tmp_path, sets=["train.max_steps=2"])[0]
    train_run(spec, progress=False)
    folder = spec.directory() / "checkpoints"
    state = load_checkpoint(folder)
    state["config"]["train"]["threads"] = None  # what such a checkpoint holds
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
