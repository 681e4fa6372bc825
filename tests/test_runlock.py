"""Per-run locks: many runs of a study at once, never one run twice, stale holders named."""

import os
import socket
import subprocess
import sys
import time

import pytest

from siamlab.results import holder as holder_mod
from siamlab.results.holder import Holder
from siamlab.results.runlock import LOCK_FILE, RunLockedError, lock_holder, run_lock
from siamlab.results.runstate import read_state
from siamlab.results.store import open_run
from siamlab.study.execute import run_study
from tests.conftest import tiny_runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_left_by_a_dead_process_on_this_host_is_stale(tmp_path):
    dead = Holder(_dead_pid(), socket.gethostname(), "", "2026-01-01T00:00:00")
    (tmp_path / LOCK_FILE).write_text(dead.to_json())
    assert lock_holder(tmp_path) is None  # named, but dead
    with run_lock(tmp_path) as lock:
        assert lock.stale == dead
        assert lock_holder(tmp_path) == Holder.parse((tmp_path / LOCK_FILE).read_text())
        assert lock_holder(tmp_path).pid == os.getpid()
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly: no holder named


def test_a_holder_on_another_host_counts_while_its_slurm_job_lives(tmp_path, monkeypatch):
    other = Holder(4242, "node-17", "901_3", "2026-01-01T00:00:00")
    (tmp_path / LOCK_FILE).write_text(other.to_json())
    monkeypatch.setattr(holder_mod, "slurm_job_active", lambda job: True)
    with pytest.raises(RunLockedError, match=r"pid 4242 on node-17, Slurm job 901_3"):
        run_lock(tmp_path).__enter__()
    monkeypatch.setattr(holder_mod, "slurm_job_active", lambda job: False)  # job ended
    with run_lock(tmp_path) as lock:
        assert lock.stale == other


def test_a_requeued_slurm_task_takes_the_lock_its_killed_attempt_left(tmp_path, monkeypatch):
    """SIGKILLed on node-17, requeued on this host under the same job id, which squeue
    reports as running (it is this very task)."""
    (tmp_path / LOCK_FILE).write_text(Holder(4242, "node-17", "901_3", "2026-01-01").to_json())
    monkeypatch.setattr(holder_mod, "slurm_job_active", lambda job: True)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "901")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    with run_lock(tmp_path) as lock:
        assert lock.stale is not None and lock.stale.host == "node-17"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # another task of the array: refused
    (tmp_path / LOCK_FILE).write_text(Holder(4242, "node-17", "901_3", "2026-01-01").to_json())
    with pytest.raises(RunLockedError, match="Slurm job 901_3"):
        run_lock(tmp_path).__enter__()


def test_a_run_held_by_another_launcher_is_skipped_and_the_others_train(tmp_path):
    runs = tiny_runs(tmp_path, variants={"held": {}, "free": {}}, sets=["train.epochs=1"])
    with run_lock(runs[0].directory()):
        reports = run_study(runs, progress=False, log=lambda _: None)
    assert [r.status for r in reports] == ["locked", "finished"]
    assert f"pid {os.getpid()} on {socket.gethostname()}" in reports[0].error
    assert not (runs[0].directory() / "metrics.nc").exists()  # never trained twice
    assert open_run(runs[1].directory()).attrs["status"] == "finished"
    state = read_state(runs[1].directory())
    assert state is not None and state.state == "finished" and state.pid == os.getpid()
    assert state.total_steps == 4  # 256 images / batch 64, one epoch


def _die_leaving_a_child_with_the_lock(run_dir, hold_s: float) -> int:
    """A process takes the lock, forks a child (as a DataLoader does) and dies; its pid."""
    code = (
        "import os, sys, time\n"
        "from siamlab.results.runlock import run_lock\n"
        f"held = run_lock({str(run_dir)!r})\n"
        "held.__enter__()\n"
        "print(os.getpid(), flush=True)\n"
        "if os.fork() == 0:\n"
        "    null = os.open(os.devnull, os.O_WRONLY)\n"  # let the parent's output pipe close
        "    os.dup2(null, 1)\n    os.dup2(null, 2)\n"
        f"    time.sleep({hold_s})\n    os._exit(0)\n"
        "os._exit(0)\n"  # dies holding the lock: its forked child keeps the open file
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def test_the_lock_of_a_dead_holder_is_taken_once_its_forked_children_exit(tmp_path):
    dead = _die_leaving_a_child_with_the_lock(tmp_path / "run", hold_s=1.5)
    t0 = time.monotonic()
    with run_lock(tmp_path / "run") as lock:  # waits for the child, does not skip the run
        assert lock.stale is not None and lock.stale.pid == dead
    assert time.monotonic() - t0 > 0.5  # it did wait


def test_a_dead_holders_child_that_keeps_the_lock_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("siamlab.results.runlock.ORPHAN_WAIT_S", 0.3)
    dead = _die_leaving_a_child_with_the_lock(tmp_path / "run", hold_s=3)
    with pytest.raises(RunLockedError, match=f"pid {dead}"), run_lock(tmp_path / "run"):
        pass
