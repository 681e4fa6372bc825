"""``--launcher slurm`` against a real single-node Slurm (started by conftest.py)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from siamlab.launch.config import ClusterConfig
from siamlab.launch.slurm import submit_slurm
from siamlab.results.runstate import read_state
from siamlab.results.store import METRICS_FILE, open_run
from siamlab.study.execute import run_study
from siamlab.study.status import study_status
from tests.conftest import TINY, tiny_runs
from tests.test_reliability import _assert_same_run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
CLUSTER = ClusterConfig(time=10, cpus_per_task=1, signal_delay_s=0)
NAMES = ("loss", "z_std_train", "knn_top1", "lr", "epoch_loss")
QUIET = {"log": lambda _: None}


@pytest.fixture(autouse=True)
def _jobs_import_this_tree(monkeypatch):
    """sbatch exports this environment: the jobs import the siamlab under test."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _squeue(*args: str) -> str:
    out = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _wait(study_dir: Path, until, timeout: float = 150.0) -> list:
    """Poll ``siamlab status`` rows until ``until(rows)`` (with a clear failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = study_status(study_dir)
        if rows and until(rows):
            return rows
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-2000:] for p in study_dir.glob(".submitit/*.err"))
    pytest.fail(f"timed out: {study_status(study_dir)}\nqueue: {_squeue()}\n{logs}")


def _ended(rows) -> bool:
    return all(r.state in ("finished", "failed", "diverged") for r in rows)


def test_an_array_of_two_runs_equals_the_sequential_study(slurm, tmp_path):
    variants = {"a": {}, "b": {"optim": {"base_lr": 0.2}}}
    runs = tiny_runs(tmp_path / "array", variants=variants)
    sub = submit_slurm(runs, CLUSTER, **QUIET)
    array = sub.job_ids[0].split("_")[0]
    assert sub.job_ids == [f"{array}_0", f"{array}_1"]  # one array, one task per run
    reference = tiny_runs(tmp_path / "sequential", variants=variants)
    run_study(reference, progress=False, **QUIET)  # meanwhile, the plain sequential study
    rows = _wait(runs[0].directory().parents[1], _ended)
    assert [(r.name, r.state, r.job) for r in rows] == [
        ("a/seed0", "finished", f"{array}_0"),
        ("b/seed0", "finished", f"{array}_1"),
    ]
    assert all(r.step == r.total == 8 for r in rows)
    for ref, run in zip(reference, runs, strict=True):
        _assert_same_run(ref.directory(), run.directory(), NAMES)
    # submitting again submits nothing: both runs are finished
    assert submit_slurm(runs, CLUSTER, **QUIET).job_ids == []


def test_a_preempted_task_is_requeued_and_resumes_bit_identically(slurm, tmp_path):
    sets = ["train.epochs=30"]  # 120 steps: a window to see it running, even under load
    (spec,) = tiny_runs(tmp_path / "slurm", sets=sets)
    (job,) = submit_slurm([spec], CLUSTER, **QUIET).job_ids
    study = spec.directory().parents[1]
    rows = _wait(study, lambda rows: rows[0].state == "running" and rows[0].step >= 4)
    assert rows[0].job == job and rows[0].total == 120  # siamlab status while it trains
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # Slurm's warning signal
    _wait(study, lambda rows: open_run(spec.directory()).attrs["status"] == "preempted")
    deadline = time.monotonic() + 60
    while "PENDING" not in _squeue("-j", job, "-o", "%T") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "PENDING" in _squeue("-j", job, "-o", "%T"), "not requeued"
    # slurmd refuses a credential made in the second its job was requeued ("Job credential
    # revoked", and the job ends; seen once in CI): Slurm's own requeue delay avoids that,
    # so this shortcut past the delay first waits out that second
    time.sleep(2.0)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    rows = _wait(study, _ended)
    assert rows[0].state == "finished"
    assert read_state(spec.directory()).requeues == 1
    (reference,) = tiny_runs(tmp_path / "plain", sets=sets)
    run_study([reference], progress=False, **QUIET)
    _assert_same_run(reference.directory(), spec.directory(), NAMES)


def test_a_run_that_fails_on_bad_input_is_not_requeued(slurm, tmp_path):
    (spec,) = tiny_runs(tmp_path, sets=["data.dataset=npz", f"data.root={tmp_path / 'none'}"])
    (job,) = submit_slurm([spec], CLUSTER, **QUIET).job_ids
    rows = _wait(spec.directory().parents[1], _ended, timeout=90)
    assert rows[0].state == "failed"
    state = read_state(spec.directory())
    assert str(tmp_path / "none") in state.error and state.requeues == 0
    deadline = time.monotonic() + 30
    while _squeue("-j", job) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _squeue("-j", job) == ""  # ended, not pending again


def test_dry_run_prints_the_submission_and_submits_nothing(slurm, tmp_path):
    study = tmp_path / "dry.yaml"
    study.write_text(yaml.safe_dump({"name": "dry", "variants": {"a": {}, "b": {}}}))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({"time": "1:30:00", "cpus_per_task": 2, "qos": "low"}))
    sets = [a for s in [*TINY, f"output.root={tmp_path}"] for a in ("--set", s)]
    cmd = [sys.executable, "-m", "siamlab", "run", str(study), *sets]
    cmd += ["--launcher", "slurm", "--launcher-config", str(cluster), "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for text in ("time: 90", "cpus_per_task: 2", "qos: low", "a/seed0", "b/seed0", "nothing"):
        assert text in proc.stdout
    assert _squeue("-n", "siamlab-dry") == ""
    assert not list(tmp_path.glob(f"dry/*/seed0/{METRICS_FILE}"))
    assert not list(tmp_path.glob("dry/*/seed0/state.json"))
