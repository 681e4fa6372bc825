"""A CPU run's thread count: recorded, restored between runs, and kept on resume.

On a CPU the kernels split their sums by thread, so a run trained with 1 thread and
one trained with 2 differ in float rounding (README, Speed). A resumed run equals an
uninterrupted one only with the same count, so the checkpoint records it and a resume
with ``train.threads`` unset continues on it.
"""

import os
import re

import pytest
import torch

from siamlab.results.run_notes import run_notes
from siamlab.results.store import open_run, open_study, write_run
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.config import TrainConfig
from siamlab.train.device import (
    configure_torch,
    default_threads,
    set_default_threads,
    usable_cores,
)
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


def _resume(tmp_path, monkeypatch, started: str, resumed: str, default=None, drop_key=False):
    """A tiny 2-epoch run on ``train.threads=started`` killed after its epoch-1 checkpoint,
    resumed on ``train.threads=resumed`` ("null": unset) where this process's default
    count is ``default`` (another machine's, or a job's share); the resumed run's spec.

    ``drop_key``: remove the checkpoint's ``threads`` (and the results' thread spans), as
    in one of before 2026-12-04.
    Torch's count is restored afterwards.
    """
    before = default_threads()
    kill_after_epoch(
        tiny_runs(tmp_path, sets=["train.epochs=2", f"train.threads={started}"])[0], 1, monkeypatch
    )
    spec = tiny_runs(tmp_path, sets=["train.epochs=2", f"train.threads={resumed}"])[0]
    if drop_key:
        state = load_checkpoint(spec.directory() / "checkpoints")
        del state["threads"]
        state["created"] = state["created"]["created"]  # its results state: the time alone
        save_checkpoint(spec.directory() / "checkpoints", state)
    if default is not None:
        monkeypatch.setattr("siamlab.train.device.default_threads", lambda: default)
    try:
        assert train_run(spec, progress=False).status == "finished"
    finally:
        torch.set_num_threads(before)
    return spec


def _threads(spec) -> int:
    return open_run(spec.directory()).attrs["threads"]


def test_a_resume_with_threads_unset_continues_on_the_checkpoints_count(tmp_path, monkeypatch):
    default = default_threads()
    spec = _resume(tmp_path, monkeypatch, "null", "null", default=default + 1)
    assert _threads(spec) == default  # the checkpoint's count, not this default + 1
    assert "threads_history" not in open_run(spec.directory()).attrs  # one count throughout


def test_a_run_started_on_a_set_count_resumes_on_it_with_threads_unset(tmp_path, monkeypatch):
    """How a run of ``--launcher local`` (before it stopped writing the count into the
    configs) or of ``--set train.threads=1`` resumes without the flag: not refused."""
    reference = tiny_runs(tmp_path / "whole", sets=["train.epochs=2"])[0]  # threads=1
    train_run(reference, progress=False)
    spec = _resume(tmp_path / "cut", monkeypatch, "1", "null", default=default_threads() + 1)
    assert _threads(spec) == 1
    _assert_same_run(reference.directory(), spec.directory(), ("loss", "z_std_train"))


def test_a_resume_on_another_set_count_warns_that_it_is_inexact(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match="trained on 1 CPU threads.*float rounding"):
        spec = _resume(tmp_path, monkeypatch, "1", "2")
    assert _threads(spec) == 2
    history = open_run(spec.directory()).attrs["threads_history"]
    first = int(re.fullmatch(r"1 from step 1, 2 from step (\d+)", history)[1])
    assert first == load_checkpoint(spec.directory() / "checkpoints")["step"] // 2 + 1  # epoch 2
    notes = " ".join(run_notes(open_study(tmp_path / "tiny")))
    assert "resumed on another CPU thread count, so not bit for bit" in notes
    assert f"default/seed0 ({history})" in notes


def test_a_checkpoint_of_a_launched_run_before_the_threads_key_resumes_on_its_config(
    tmp_path, monkeypatch
):
    """2026-12-02 to 12-04 the local launcher wrote its share into train.threads and the
    checkpoint had no ``threads``: that config's count is the one the run trained on."""
    default = default_threads() + 1
    spec = _resume(tmp_path, monkeypatch, "1", "null", default=default, drop_key=True)
    assert _threads(spec) == 1
    assert "threads_history" not in open_run(spec.directory()).attrs  # 1 from step 1 on


def test_a_checkpoint_without_a_thread_count_resumes(tmp_path, monkeypatch):
    spec = _resume(tmp_path, monkeypatch, "null", "null", drop_key=True)  # nothing recorded
    assert _threads(spec) == default_threads()


def test_a_resume_on_more_threads_than_the_default_warns_that_they_may_spin(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match="checkpoint's 2 CPU threads.*OMP_WAIT_POLICY"):
        spec = _resume(tmp_path, monkeypatch, "2", "null", default=1)  # a job's share: 1
    assert _threads(spec) == 2


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


def test_usable_cores_are_the_affinity_mask_or_without_one_every_core(monkeypatch):
    from siamlab.launch.local import job_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert (usable_cores(), job_threads(2), job_threads(4)) == (3, 1, 1)
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS
    assert (usable_cores(), job_threads(2), job_threads(3)) == (8, 4, 2)


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


def test_only_a_checkpoint_from_before_the_spans_is_taken_to_have_trained_on_its_count(tmp_path):
    """A run started on a GPU has no CPU span: resumed on a CPU, it records none before."""
    from siamlab.results.recorder import Recorder
    from siamlab.run.results_file import ResultsFile
    from siamlab.train.distributed import DistInfo

    spec = tiny_runs(tmp_path)[0]
    count = torch.get_num_threads()

    def resumed(state) -> dict:
        results = ResultsFile(spec, tmp_path, Recorder(), DistInfo(), TrainConfig(), CPU)
        results.load_state_dict(state)
        results.trains_from(9, earlier=count + 3)
        return results._thread_history()

    assert resumed({"created": "t", "thread_spans": []}) == {}  # from a GPU process
    old = {"threads_history": f"{count + 3} from step 1, {count} from step 9"}
    assert resumed("t") == old  # before 2026-12-07: the checkpoint's count from step 1
