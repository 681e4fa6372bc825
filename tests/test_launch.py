"""Launchers without Slurm: cluster.yaml, --launcher local --jobs N, two launchers on one
study, ``siamlab status`` in every state, and tables that stay whole at 80 columns."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.cli.tables import fit_widths
from siamlab.errors import ConfigError
from siamlab.launch.config import ClusterConfig, read_cluster
from siamlab.launch.plan import import_submitit
from siamlab.results.runlock import run_lock
from siamlab.results.runstate import read_state, write_state
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from siamlab.study.execute import run_study
from siamlab.train.loop import Preempted
from tests.conftest import TINY, tiny_runs
from tests.test_reliability import _assert_same_run

REPO = Path(__file__).resolve().parents[1]
NAMES = ("loss", "z_std_train", "knn_top1", "lr", "epoch_loss")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "siamlab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def _study(tmp_path: Path, variants: dict, sets: list[str] = ()) -> tuple[Path, list[str]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "variants": variants}))
    args = [a for s in [*TINY, f"output.root={tmp_path}", *sets] for a in ("--set", s)]
    return path, args


def _whole_lines(out: str, words: list[str]) -> None:
    """Every word appears whole on one line, and no line is wider than 80 columns."""
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for word in words:
        assert word in out, f"{word!r} cut or missing in:\n{out}"


def test_cluster_file_is_typed_and_a_typo_names_the_key(tmp_path):
    good = tmp_path / "cluster.yaml"
    good.write_text("time: 1-02:03:00\ngpus_per_node: 4\nsbatch: {exclusive: true}\n")
    cluster = read_cluster(good)
    assert cluster.time == 24 * 60 + 2 * 60 + 3 and cluster.tasks_per_node == 4
    params = cluster.submitit_parameters()
    assert params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 4
    assert params["additional_parameters"] == {"exclusive": True}
    assert ClusterConfig().tasks_per_node == 1 and "gpus_per_node" not in (
        ClusterConfig().submitit_parameters()
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("partiton: gpu\ntime: soon\n")
    with pytest.raises(
        ConfigError, match=r"(?s)unknown key 'partiton'; did you mean 'partition'.*time"
    ):
        read_cluster(bad)


def test_without_submitit_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[slurm\]"'):
        import_submitit()
    study, args = _study(tmp_path, {"a": {}})
    result = CliRunner().invoke(app, ["run", str(study), *args, "--launcher", "local"])
    assert result.exit_code == 2 and ".[slurm]" in result.output


def test_fit_widths_never_go_below_the_longest_word():
    headers, rows = ["variant", "status", "paper"], [["no_stop_grad", "1/3 running", "x " * 40]]
    widths = fit_widths(headers, rows, 40, free=[2])
    assert widths[:2] == [12, 11] and sum(widths) + 2 * 3 <= 40
    assert fit_widths(headers, rows, 20, free=[2])[:2] == [12, 7]  # too narrow: words stay whole


@pytest.mark.slow
def test_local_launcher_runs_two_at_once_with_the_sequential_results(tmp_path):
    pytest.importorskip("submitit")
    variants = {"stop_grad": {}, "no_stop_grad": {"optim": {"base_lr": 0.2}}}
    study, args = _study(tmp_path / "local", variants)
    proc = _cli("run", str(study), *args, "--launcher", "local", "--jobs", "2", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _whole_lines(proc.stdout, ["stop_grad/seed0", "no_stop_grad/seed0", "finished"])
    runs = tiny_runs(tmp_path / "local", variants=variants)
    states = [read_state(r.directory()) for r in runs]
    assert states[0].pid != states[1].pid and all(s.job_id.startswith("local") for s in states)
    a, b = (open_run(r.directory()).attrs for r in runs)
    assert a["created"] <= b["updated"] and b["created"] <= a["updated"]  # overlapping
    reference = tiny_runs(tmp_path / "seq", variants=variants)
    run_study(reference, progress=False, log=lambda _: None)
    for ref, run in zip(reference, runs, strict=True):
        _assert_same_run(ref.directory(), run.directory(), NAMES)


def test_local_launcher_resumes_a_run_on_its_checkpoints_threads(tmp_path, monkeypatch):
    """Its jobs' share of the cores is their default, not a train.threads in the config:
    a run trained on 1 thread resumes in a job whose share is another count, exactly."""
    pytest.importorskip("submitit")
    from siamlab.launch.local import job_threads
    from tests.conftest import kill_after_epoch

    if job_threads(1) == 1:
        pytest.skip("one core: the job's share is the checkpoint's count anyway")

    variants = {"stop_grad": {}}
    reference = tiny_runs(tmp_path / "whole", variants=variants)[0]  # train.threads=1
    train_run(reference, progress=False)
    cut = tiny_runs(tmp_path / "cut", variants=variants)[0]
    kill_after_epoch(cut, 1, monkeypatch)
    study, args = _study(tmp_path / "cut", variants, sets=["train.threads=null"])
    proc = _cli("run", str(study), *args, "--launcher", "local", "--jobs", "1", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refusing" not in proc.stdout + proc.stderr
    assert open_run(cut.directory()).attrs["threads"] == 1  # the checkpoint's, not the share
    _assert_same_run(reference.directory(), cut.directory(), NAMES)


@pytest.mark.slow
def test_two_launchers_on_one_study_never_train_the_same_run(tmp_path):
    study, args = _study(tmp_path, {"a": {}, "b": {}})
    cmd = [sys.executable, "-m", "siamlab", "run", str(study), *args, "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for name in ("a/seed0", "b/seed0"):
        left = [f"{name}: skipped" in out or f"{name}: finished earlier" in out for out in outs]
        assert sorted(left) == [False, True], outs  # one trained it, the other left it
        assert open_run(tmp_path / "tiny" / name).attrs["status"] == "finished"


def test_status_shows_every_state_whole_at_80_columns(tmp_path):
    variants = {"finished_run": {}, "bad_data": {}, "held": {}, "cut": {}, "waiting": {}}
    runs = {r.variant: r for r in tiny_runs(tmp_path, variants=variants, sets=["train.epochs=1"])}
    run_study([runs["finished_run"]], progress=False, log=lambda _: None)
    bad = tiny_runs(tmp_path, {"bad_data": {}}, ["data.dataset=npz", f"data.root={tmp_path}/x"])
    run_study(bad, progress=False, log=lambda _: None)
    with pytest.raises(Preempted):
        train_run(runs["cut"], progress=False, should_stop=lambda: True)
    write_state(runs["waiting"].directory(), state="queued", log=str(tmp_path / "w.log"))
    write_state(runs["held"].directory(), state="running", total_steps=40)
    with run_lock(runs["held"].directory()):
        proc = _cli("status", str(tmp_path / "tiny"))
    assert proc.returncode == 0, proc.stderr
    expected = {
        "finished_run/seed0": "finished",
        "bad_data/seed0": "failed",
        "held/seed0": "running",
        "cut/seed0": "preempted",
        "waiting/seed0": "queued",
    }
    _whole_lines(proc.stdout, [*expected, *expected.values(), "0/40", "4/4"])
    assert "w.log" in "".join(proc.stdout.split())  # the log path folds where it must
    for name, state in expected.items():
        line = next(ln for ln in proc.stdout.splitlines() if name in ln)
        assert state in line, line
    write_state(runs["held"].directory(), state="running")  # its process is gone: stopped
    assert "stopped" in _cli("status", str(tmp_path / "tiny")).stdout


def test_compare_and_the_run_summary_keep_names_whole_at_80_columns(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from siamlab.cli.app import app, console

    monkeypatch.setattr(console, "width", 80)  # what COLUMNS=80 gives a terminal
    study = REPO / "studies" / "stopgrad.yaml"
    sets = [*TINY, "train.epochs=1", f"output.root={tmp_path}"]
    args = ["run", str(study), *[a for s in sets for a in ("--set", s)], "--no-progress"]
    proc = CliRunner().invoke(app, args)
    assert proc.exit_code == 0, proc.output
    _whole_lines(proc.stdout, ["stop_grad/seed0", "no_stop_grad/seed0", "finished"])
    compared = CliRunner().invoke(app, ["compare", str(tmp_path / "stopgrad")])
    assert compared.exit_code == 0, compared.output
    verdicts = [str(open_run(p).attrs["verdict"]) for p in (tmp_path / "stopgrad").glob("*/seed0")]
    _whole_lines(compared.stdout, ["stop_grad", "no_stop_grad", "finished", *verdicts])


def test_slurm_tasks_train_on_cpus_per_task_threads(tmp_path, monkeypatch):
    """cluster.yaml's cpus_per_task is each task's torch threads (train.threads unset),
    not torch's default of every core the node shows; the dry run says so."""
    from siamlab.launch import slurm

    tasks: list = []

    class Executor:  # submitit.SlurmExecutor's surface that submit_slurm uses
        def __init__(self, folder: Path, max_num_timeout: int) -> None:
            self.folder = folder

        def update_parameters(self, **parameters: object) -> None:
            self.parameters = parameters

        def batch(self) -> contextlib.nullcontext:
            return contextlib.nullcontext()

        def submit(self, task: object, runs: list) -> SimpleNamespace:
            tasks.append(task)
            return SimpleNamespace(
                job_id=f"7_{len(tasks) - 1}", paths=SimpleNamespace(stdout="log")
            )

    monkeypatch.setattr(slurm, "import_submitit", lambda: SimpleNamespace(SlurmExecutor=Executor))
    runs = tiny_runs(tmp_path, variants={"a": {}, "b": {}})
    cluster = ClusterConfig(cpus_per_task=3)
    dry = slurm.submit_slurm(runs, cluster, dry_run=True, log=lambda _: None)
    assert "torch CPU threads per process: 3 (cpus_per_task; train.threads overrides)" in (
        slurm.describe(dry)
    )
    sub = slurm.submit_slurm(runs, cluster, log=lambda _: None)
    assert sub.job_ids == ["7_0", "7_1"] and [t.threads for t in tasks] == [3, 3]
    assert sub.parameters["cpus_per_task"] == 3
