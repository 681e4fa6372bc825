"""Two processes (torchrun, gloo on CPU) equal one: results do not depend on the world size."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from siamlab.results.store import open_run
from siamlab.train.checkpoint import load_checkpoint
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
SETS = [*TINY, "train.epochs=2", "data.train_limit=256"]  # 4 steps of 64 per epoch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: Path, nproc: int, extra: list[str]) -> Path:
    study = tmp_path / "tiny.yaml"
    study.write_text(yaml.safe_dump({"name": "tiny", "variants": {"default": {}}}))
    root = tmp_path / f"out{nproc}"
    args = [a for s in [*SETS, *extra, f"output.root={root}"] for a in ("--set", s)]
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
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "tiny" / "default" / "seed0"


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-5) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    one, two = _run(tmp_path, 1, []), _run(tmp_path, 2, [])
    a, b = open_run(one), open_run(two)
    assert b.attrs["world_size"] == 2 and b.attrs["status"] == "finished"
    _close(a["loss"].values, b["loss"].values)
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
def test_two_processes_update_the_same_eta_rows(tmp_path):
    extra = ["objective.eta.mode=moving_average", "model.predictor.kind=none"]
    one, two = _run(tmp_path, 1, extra), _run(tmp_path, 2, extra)
    ta = load_checkpoint(one / "checkpoints")["targets"]["table"]
    tb = load_checkpoint(two / "checkpoints")["targets"]["table"]
    assert torch.equal(ta["visited"], tb["visited"])
    assert torch.equal(ta["last_step"], tb["last_step"])
    torch.testing.assert_close(ta["values"], tb["values"], rtol=1e-4, atol=1e-4)
    _close(open_run(one)["loss"].values, open_run(two)["loss"].values, rtol=1e-4)
