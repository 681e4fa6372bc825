"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end, here in CI size."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
FILES = {
    "env.txt",
    "pytest_cuda.txt",
    "bench_resnet18_cifar.txt",
    "bench_resnet50_224.txt",
    "study_stopgrad.txt",
    "summary.json",
}


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_plan_runs_the_issue_commands_and_fits_what_comes_back(tmp_path):
    gc = _module()
    args = gc.argparse.Namespace(tiny=False)
    steps = gc.plan(args, ["data.dataset=npz", "data.root=/d"], tmp_path)
    names = [s.name for s in steps]
    assert names[:2] == ["env", "cuda_tests"] and names[-2:] == [
        "bench_resnet18_compile",
        "bench_resnet50_compile",
    ]  # the costliest (compiling) come last, so a short budget drops them first
    assert len({s.file for s in steps}) + 1 <= 8  # + summary.json: a lent machine returns 8
    r50 = " ".join(next(s for s in steps if s.name == "bench_resnet50_compile").command)
    for part in ("--profile imagenet", "data.image_size=224", "train.precision=bf16"):
        assert part in r50
    assert "train.channels_last=true" in r50 and "train.compile=true" in r50
    study = " ".join(next(s for s in steps if s.name == "study_stopgrad").command)
    assert "studies/stopgrad.yaml --profile cifar10" in study and "train.epochs=2" in study


def test_a_step_that_cannot_start_in_time_is_skipped(tmp_path):
    gc = _module()
    check = gc.Check(tmp_path, tmp_path, budget_s=10, env=dict(os.environ))
    step = gc.Step("late", "late.txt", [sys.executable, "-c", "print(1)"], cap_s=60)
    check.run(step)
    assert step.status == "skipped" and not (tmp_path / "late.txt").exists()


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_in_ci_size(tmp_path):
    out = tmp_path / "figures"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == FILES
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["steps"]] == ["ok"] * 5, summary["steps"]
    assert re.match(r"[0-9a-f]{40}", summary["commit"]), summary["commit"]  # this clone's
    tests = (out / "pytest_cuda.txt").read_text()
    if not torch.cuda.is_available():
        assert "skipped" in tests and "needs a CUDA GPU" in tests
    for bench in ("bench_resnet18_cifar.txt", "bench_resnet50_224.txt"):
        text = (out / bench).read_text()
        for arm in ("reference", "siamlab fp32", "bf16+CL", "ratio siamlab / reference"):
            assert arm in text, (bench, arm)
    study = (out / "study_stopgrad.txt").read_text()
    assert "stop_grad/seed0" in study and "no_stop_grad/seed0" in study
    assert study.count("finished") >= 2
