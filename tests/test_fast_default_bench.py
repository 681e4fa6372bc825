"""benchmarks/fast_default.py: fp32 vs the quick profile's fast path, side by side."""

import importlib.util
import math
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "fast_default.py"


def _module():
    spec = importlib.util.spec_from_file_location("fast_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_within_spread_is_two_standard_errors_of_a_difference():
    within = _module().within_spread
    a = [1.0, 2.0, 3.0]  # seed std 1: a difference of two 3-seed means has SE sqrt(2/3)
    assert within(a, [x + 1.6 for x in a]) == pytest.approx((1.6, True))
    diff, ok = within(a, [x + 1.7 for x in a])
    assert diff == pytest.approx(1.7) and not ok  # 2 x sqrt(2/3) = 1.633
    assert within([1.0], [1.0]) == (0.0, False)  # one seed: no spread to compare with


def test_script_runs_both_arms_and_writes_the_table(tmp_path, monkeypatch):
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nvariants: {a: {}, b: {objective: {stop_grad: false}}}\n")
    sets = [*TINY, "train.max_steps=3"]
    args = ["--study", str(study), "--seeds", "0", "--out", str(tmp_path / "out")]
    monkeypatch.setattr("sys.argv", ["fast_default.py", *args, *(f"--set={s}" for s in sets)])
    monkeypatch.chdir(ROOT)
    module = _module()
    module.main()
    text = (tmp_path / "out" / "outcome.md").read_text()
    rows = [
        line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")
    ]
    assert [r.split(" | ")[0] for r in rows] == ["| a", "| b"]  # the study's order
    assert "job time per seed, s: fp32 " in text and "fast is" in text
    times = module.json.loads((tmp_path / "out" / "times.json").read_text())
    assert set(times) == {"fp32/seed0", "fast/seed0"} and all(
        math.isfinite(t) for t in times.values()
    )
    ds = module.open_study(tmp_path / "out" / "fp32" / "s")
    assert set(ds["precision"].values.ravel()) == {"fp32"}
