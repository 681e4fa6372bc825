"""analysis/verdict_calibration.py: labelled runs are judged, tuned and reported as documented."""

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from siamlab.diagnostics.config import VerdictConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calib():
    spec = importlib.util.spec_from_file_location(
        "verdict_calibration", ROOT / "analysis" / "verdict_calibration.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_synthetic_trajectories_get_their_labels_with_the_defaults(calib):
    runs = calib.synthetic_runs()
    verdicts = {r.name: calib.judge_run(r, VerdictConfig()).verdict for r in runs}
    assert verdicts == {r.name: r.expected for r in runs}
    assert {r.expected for r in runs} == {"unstable", "not_converging"}


def test_a_threshold_that_cannot_see_the_oscillation_loses_it(calib):
    oscillating = [r for r in calib.synthetic_runs() if "oscillating" in r.name]
    blind = VerdictConfig(unstable_noise_ratio=50.0)
    assert {calib.judge_run(r, blind).verdict for r in oscillating} == {"healthy"}


def test_tune_finds_a_point_that_gets_every_tuning_run_right(calib):
    runs = calib.synthetic_runs(seeds=(0,))
    cfg, best = calib.tune(runs, VerdictConfig())
    assert best == len(runs)
    assert all(calib.judge_run(r, cfg).verdict == r.expected for r in runs)
    for name, values in {**calib.GRID, **calib.PARTIAL_GRID}.items():
        assert getattr(cfg, name) in values
    assert set(calib.TUNED) == set(calib.GRID) | set(calib.PARTIAL_GRID)


def test_the_confusion_table_counts_right_and_wrong(calib):
    runs = calib.synthetic_runs(seeds=(0,))
    table = calib.confusion(runs, VerdictConfig(unstable_noise_ratio=50.0))
    assert "| unstable | 1 | 0 | 0 | 0 | 0 | 0 |" in table  # judged healthy: wrong
    assert "1 of 2 run verdicts right (50%; 1 if a collapse must be complete" in table


def test_a_collapse_on_its_way_counts_as_right_for_a_complete_collapse_only(calib):
    run = calib.LabelledRun("x", "digits", 0, "collapsed", "finished", [])
    assert calib.right(run, "collapsed") and calib.right(run, "partial_collapse")
    assert not calib.right(run, "healthy") and not calib.right(run, "dimensional_collapse")
    healthy = calib.LabelledRun("y", "digits", 0, "healthy", "finished", [])
    assert not calib.right(healthy, "partial_collapse")


def test_main_writes_the_report_from_results_roots(calib, tmp_path):
    out = tmp_path / "report.md"
    text = calib.main([str(tmp_path / "none"), "--tune", "digits:0", "--out", str(out)])
    assert out.read_text().strip() == text.strip()
    assert text.startswith("# Verdict calibration")
    assert "synthetic/oscillating/seed1" in text


def test_the_tuning_part_can_name_several_data_sets(calib):
    parts = calib.tuning_parts("digits:0,cifar:0")
    assert parts == {("digits", 0), ("cifar", 0), ("synthetic", 0)}
    assert calib.describe_parts(parts) == "cifar seed 0 + digits seed 0 + synthetic seed 0"
    with pytest.raises(SystemExit, match="expected DATA:SEED"):
        calib.tuning_parts("digits")


def test_one_training_under_two_study_names_is_one_labelled_run(calib):
    base = {"optim": {"base_lr": 0.05}, "diagnostics": {"verdict": {"hold_evaluations": 3}}}
    other_names = {**base, "output": {"root": "elsewhere"}}
    other_thresholds = {**base, "diagnostics": {"verdict": {"hold_evaluations": 5}}}
    key = calib.training_key(yaml.safe_dump(base), 0)
    assert calib.training_key(yaml.safe_dump(other_names), 0) == key
    assert calib.training_key(yaml.safe_dump(other_thresholds), 0) == key
    assert calib.training_key(yaml.safe_dump(base), 1) != key
    other_lr = {**base, "optim": {"base_lr": 0.5}}
    assert calib.training_key(yaml.safe_dump(other_lr), 0) != key
