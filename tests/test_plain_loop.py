"""The README's plain-loop example runs, and says what ``siamlab run`` of its config says."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from torch import nn
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.results.store import open_run

ROOT = Path(__file__).resolve().parents[1]
PLAIN_LOOP = "<!-- plain-loop example:"
OTHER_LIBRARY = "<!-- another library's model:"
TIMED = {"images_per_second"}  # wall-clock throughput: the one variable that may differ


def readme_example(marker: str) -> str:
    """The first Python block after ``marker`` in the README."""
    text = (ROOT / "README.md").read_text()
    assert text.count(marker) == 1, f"README.md must hold one {marker!r} marker"
    found = re.search(r"```python\n(.*?)```", text[text.index(marker) :], re.S)
    assert found is not None, f"no ```python block after {marker!r}"
    return found.group(1)


def _config(yaml_text: str) -> dict:
    config = yaml.safe_load(yaml_text)
    config.pop("output")  # where results go, not what trains
    return config


@pytest.mark.slow
def test_readme_plain_loop_gives_siamlab_runs_verdict_and_values(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.chdir(ROOT)  # the example names studies/stopgrad.yaml
    example: dict = {}
    try:
        exec(compile(readme_example(PLAIN_LOOP), "README.md (plain loop)", "exec"), example)
        sets = [f"--set={s}" for s in example["sets"]]
        args = ["run", "studies/stopgrad.yaml", "--only", "stop_grad", "--no-progress", *sets]
        args += [f"--set=output.root={tmp_path}", "--set=output.tensorboard=false"]
        result = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    ran = open_run(tmp_path / "stopgrad" / "stop_grad" / "seed0")
    plain: xr.Dataset = example["ds"]
    assert _config(ran.attrs["config"]) == _config(
        yaml.safe_dump(example["run"].config.model_dump(mode="json"))
    )
    keys = ("verdict", "verdict_onset_epoch", "verdict_evidence", "verdict_provisional")
    assert {k: plain.attrs[k] for k in keys} == {k: ran.attrs[k] for k in keys}
    assert ran.attrs["verdict"] in result.output  # what siamlab run prints
    assert example["monitor"].verdict.verdict == ran.attrs["verdict"]
    assert set(plain.data_vars) == set(ran.data_vars)
    for name in sorted(set(ran.data_vars) - TIMED):  # bit-identical on CPU
        xr.testing.assert_identical(plain[name], ran[name])


class LightlyStyle(nn.Module):
    """Parts named as lightly's SimSiam example names them; the backbone ends in (B, C, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 1), nn.AdaptiveAvgPool2d(1))
        self.projection_head = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8))
        self.prediction_head = nn.Linear(8, 8)


def test_readme_snippet_for_another_librarys_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # log_dir="tb/"
    torch.manual_seed(0)
    model = LightlyStyle()
    ns = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.05)}
    exec(compile(readme_example(OTHER_LIBRARY), "README.md (another library)", "exec"), ns)
    monitor = ns["monitor"]
    images = TensorDataset(torch.randn(40, 3, 4, 4), torch.arange(40) % 10)
    for _ in range(3):
        x1, x2 = torch.randn(16, 3, 4, 4), torch.randn(16, 3, 4, 4)
        (h1, z1, p1), (h2, z2, p2) = ns["embed"](x1), ns["embed"](x2)
        loss = -(nn.functional.cosine_similarity(p1, z2.detach()).mean())
        ns["optimizer"].zero_grad()
        loss.backward()
        ns["optimizer"].step()
        step = monitor.step(z1, z2, p1, p2, loss, h1=h1, h2=h2)
    assert step["lr"] == 0.05 and np.isfinite(step["grad_norm"]).all()  # read from the parts
    values = monitor.epoch(images, images)
    monitor.close()
    assert {"knn_top1", "z_std_eval", "h_spectrum", "verdict"} <= set(values)
    assert values["h_spectrum"].shape == (16,)  # h flattened from (B, 16, 1, 1)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
