"""The README's plain-loop example runs, and says what ``siamlab run`` of its config says."""

import re
from pathlib import Path

import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.results.store import open_run

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- plain-loop example:"
TIMED = {"images_per_second"}  # wall-clock throughput: the one variable that may differ


def readme_example() -> str:
    """The first Python block after the README's plain-loop marker."""
    text = (ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1, f"README.md must hold one {MARKER!r} marker"
    found = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert found is not None, "no ```python block after the plain-loop marker"
    return found.group(1)


def _config(yaml_text: str) -> dict:
    config = yaml.safe_load(yaml_text)
    config.pop("output")  # where results go, not what trains
    return config


@pytest.mark.slow
def test_readme_plain_loop_gives_siamlab_runs_verdict_and_values(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    monkeypatch.chdir(ROOT)  # the example names studies/stopgrad.yaml
    example: dict = {}
    try:
        exec(compile(readme_example(), "README.md (plain-loop example)", "exec"), example)
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
