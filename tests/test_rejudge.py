"""siamlab rejudge: a run's recorded inputs give back its verdict; thresholds move it."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.registry import DEFAULT_HOOKS as HOOKS
from siamlab.errors import ConfigError
from siamlab.results.rejudge import judge_inputs, judge_run, rejudge, rejudged_dataset
from siamlab.results.store import open_run, run_dirs
from siamlab.results.verdicts import verdict_from_attrs
from siamlab.run.train_run import train_run
from tests.conftest import tiny_runs


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real tiny runs of 4 epochs: SimSiam, no stop-gradient, evaluated every 2nd epoch
    (1, 2, 4), and without the batch-geometry hook (the judged loss is the recorded one)."""
    root = tmp_path_factory.mktemp("rejudge")
    variants = {
        "simsiam": {},
        "no_stop_grad": {"objective": {"stop_grad": False}},
        "every_2nd": {"diagnostics": {"eval_every_epochs": 2, "spectrum_every_epochs": 2}},
        "no_geometry": {"diagnostics": {"hooks": [h for h in HOOKS if h != "batch_geometry"]}},
    }
    for spec in tiny_runs(root, variants=variants, sets=["train.epochs=4"]):
        train_run(spec, progress=False)
    return root / "tiny"


def test_the_recorded_inputs_give_back_every_recorded_verdict(study_dir):
    found = rejudge([study_dir], {}, "run")
    assert len(found) == 4
    for r in found:
        assert r.now == r.recorded and not r.changed, r  # verdict, onset, evidence, mark
        assert r.now.verdict and r.now.evidence


def test_a_file_without_the_judges_inputs_is_judged_from_its_steps(study_dir):
    for run_dir in run_dirs(study_dir):
        ds = open_run(run_dir)
        if "pz_cosine_train" not in ds:
            continue  # no_geometry: such a file would hold nothing to judge by
        old = ds.drop_vars(["cosine_loss", "loss_noise", "start_loss"])
        for new, recorded in zip(judge_inputs(old), judge_inputs(ds), strict=True):
            assert new == pytest.approx(recorded, rel=1e-6)
        assert judge_run(old, VerdictConfig()) == judge_run(ds, VerdictConfig())


def test_a_threshold_moves_the_verdict_and_the_table_says_so(study_dir):
    found = rejudge([study_dir], {"collapsed_residual_norm": 0.999})
    assert all(r.changed for r in found if r.recorded.verdict not in ("collapsed",))
    for r in found:  # every residual is under 0.999: collapsed, or not_converging
        assert r.now.verdict in ("collapsed", "not_converging"), r
        assert "< 0.999" in r.now.evidence
    ds = rejudged_dataset(found, "today's defaults, collapsed_residual_norm=0.999")
    assert ds["verdict"].dims == ("run",) and set(ds.coords) == {"run", "study", "variant", "seed"}
    assert all("long_name" in ds[v].attrs for v in ds.variables)
    assert ds["changed"].sum() == sum(r.changed for r in found)


def test_start_steps_recomputes_the_start_loss_from_the_steps(study_dir):
    ds = open_run(run_dirs(study_dir)[0])
    first = -ds["pz_cosine_train"].values[:3].mean()
    assert judge_inputs(ds, start_steps=3)[0]["start_loss"] == pytest.approx(first)
    assert judge_inputs(ds)[0]["start_loss"] == float(ds["start_loss"].dropna("epoch")[0])


def test_the_judged_epochs_are_the_recorded_ones(study_dir):
    ds = open_run(study_dir / "every_2nd" / "seed0")
    assert [r["epoch"] for r in judge_inputs(ds)] == [1, 2, 4]
    ds["z_std_eval"].loc[{"epoch": 2}] = np.nan  # non-finite embeddings at epoch 2
    assert [r["epoch"] for r in judge_inputs(ds)] == [1, 2, 4]  # judged: kept
    run = judge_run(ds, VerdictConfig())
    assert run.verdict == "unstable" and "non-finite" in run.evidence  # entered at once


def test_without_cosines_the_start_is_the_recorded_loss(study_dir):
    ds = open_run(study_dir / "no_geometry" / "seed0")
    assert "pz_cosine_train" not in ds
    first = ds["loss"].values[:3].mean()
    assert judge_inputs(ds, start_steps=3)[0]["start_loss"] == pytest.approx(first)
    assert judge_inputs(ds, start_steps=10)[-1]["start_loss"] == pytest.approx(
        float(ds["start_loss"].dropna("epoch")[-1])
    )  # the judge's own start, recomputed


def test_a_diverged_run_stays_unstable():
    ds = xr.Dataset(attrs={"status": "diverged", "verdict": "unstable", "verdict_onset_epoch": 3})
    ds.attrs["verdict_evidence"] = "the loss became non-finite at step 17"
    assert judge_run(ds, VerdictConfig()) == verdict_from_attrs(ds.attrs)


def test_bad_thresholds_are_refused_before_any_file_is_read(tmp_path):
    with pytest.raises(ConfigError, match="unknown verdict threshold.*diagnostics.verdict.hold"):
        rejudge([tmp_path], {"collapse_norm": 0.1})
    with pytest.raises(ConfigError, match="diagnostics.verdict.collapsed_residual_norm"):
        rejudge([tmp_path], {"collapsed_residual_norm": 2.0})  # must be < 1


def test_cli_prints_both_verdicts_and_refuses_training_keys(study_dir, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    runner = CliRunner()
    out = runner.invoke(app, ["rejudge", str(study_dir), "--thresholds", "run"])
    assert out.exit_code == 0, out.output
    assert "tiny: verdicts judged again" in out.output and "simsiam/seed0" in out.output
    assert "0 of 4 run verdicts changed" in out.output
    moved = runner.invoke(
        app,
        ["rejudge", str(study_dir), "--set", "diagnostics.verdict.collapsed_residual_norm=0.999"],
    )
    assert moved.exit_code == 0 and "collapsed_residual_norm=0.999" in moved.output
    assert "nothing was written" in moved.output
    for bad, message in [
        (["--set", "optim.base_lr=0.1"], "only the verdict's thresholds"),
        (["--set", "diagnostics.verdict.nope=1"], "unknown verdict threshold"),
        (["--thresholds", "mine"], "current or run"),
    ]:
        res = runner.invoke(app, ["rejudge", str(study_dir), *bad])
        assert res.exit_code == 2 and message in res.output, res.output
    empty = runner.invoke(app, ["rejudge", str(study_dir.parent / "nothing")])
    assert empty.exit_code == 2
    bad_value = "diagnostics.verdict.collapsed_residual_norm=2"
    first = ["rejudge", str(study_dir.parent / "nothing"), "--set", bad_value]
    res = runner.invoke(app, first)  # a bad value is named before the missing folder
    assert res.exit_code == 2 and "collapsed_residual_norm" in res.output, res.output


def test_nothing_is_written(study_dir):
    before = {p: p.stat().st_mtime_ns for p in study_dir.rglob("*") if p.is_file()}
    rejudge([study_dir], {"collapsed_residual_norm": 0.5})
    after = {p: p.stat().st_mtime_ns for p in study_dir.rglob("*") if p.is_file()}
    assert before == after and np.all(list(before.values()))


def test_compare_notes_verdicts_judged_with_other_thresholds(study_dir, tmp_path):
    import shutil

    import yaml

    from siamlab.results.run_notes import run_notes
    from siamlab.results.store import open_study, write_run

    assert not any("thresholds" in n for n in run_notes(open_study(study_dir)))
    copy = tmp_path / "tiny"
    shutil.copytree(study_dir / "simsiam", copy / "simsiam")
    ds = open_run(copy / "simsiam" / "seed0")
    config = yaml.safe_load(ds.attrs["config"])
    config["diagnostics"]["verdict"]["collapsed_residual_norm"] = 0.1  # an older calibration
    ds.attrs["config"] = yaml.safe_dump(config)
    write_run(copy / "simsiam" / "seed0", ds)
    notes = " ".join(run_notes(open_study(copy)))
    assert "collapsed_residual_norm 0.1 (today 0.2)" in notes and "siamlab rejudge" in notes


def test_verdict_margins_lists_the_runs_a_moved_threshold_changes(study_dir):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "analysis" / "verdict_margins.py"
    spec = importlib.util.spec_from_file_location("verdict_margins", path)
    assert spec is not None and spec.loader is not None
    margins = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = margins
    spec.loader.exec_module(margins)
    factors = (1.0, 0.1, 10.0)
    rows = {(n, f): changed for n, f, _, changed in margins.margins([study_dir], list(factors))}
    assert set(rows) == {(n, f) for n in margins.TUNED for f in factors}
    assert not any(rows[(n, 1.0)] for n in margins.TUNED)  # today's thresholds: no change
    assert margins.moved("collapsed_residual_norm", 10.0) == 0.99  # a fraction stays < 1
    # which threshold a tiny run sits nearest depends on the CPU's rounding (on an
    # AVX2-only CPU x10 of collapsed_residual_norm moves none), so: some threshold moved
    # by a factor of ten changes some verdict, and only runs of the study are listed
    moved = {r.variant for (n, f), changed in rows.items() if f != 1.0 for r in changed}
    assert moved and moved <= {"simsiam", "no_stop_grad", "every_2nd", "no_geometry"}
