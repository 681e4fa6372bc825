"""compare: numbers over seeds, verdict majority, formats and error messages."""

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.errors import ResultsError
from siamlab.results.compare import compare, load_studies, majority, reduce_runs
from siamlab.results.runinfo import config_conflicts, run_notes
from siamlab.results.store import open_study
from tests.conftest import TOY_CONFIG as CONFIG
from tests.conftest import TOY_D as D
from tests.conftest import TOY_EPOCHS as EPOCHS
from tests.conftest import make_run
from tests.conftest import toy_epoch_loss as epoch_loss
from tests.conftest import toy_knn as knn


def test_final_and_best_reduce_each_run(study):
    final = reduce_runs(study, "epoch_loss", "final")
    best = reduce_runs(study, "epoch_loss", "best")
    assert final.sel(variant="good", seed=1) == pytest.approx(epoch_loss("good", 1, EPOCHS))
    assert best.sel(variant="good", seed=1) == pytest.approx(epoch_loss("good", 1, 3))
    # a running run's final value is its latest, not a padded NaN
    assert final.sel(variant="bad", seed=2) == pytest.approx(epoch_loss("bad", 2, 2))
    assert reduce_runs(study, "knn_top1", "best").sel(variant="good", seed=0) == pytest.approx(0.5)


def test_mean_std_and_verdict_over_seeds(study):
    table = compare(study, metrics=["knn_top1", "epoch_loss"])
    rows = {r.variant: r for r in table.rows}
    good = rows["good"].cells["knn_top1"]
    finals = [knn("good", s, EPOCHS) for s in range(3)]
    assert good.mean == pytest.approx(np.mean(finals))
    assert good.std == pytest.approx(np.std(finals, ddof=1))
    assert good.n == 3
    bad = rows["bad"].cells["knn_top1"]  # two finished seeds at epoch 5, one running at 2
    assert bad.mean == pytest.approx(
        np.mean([knn("bad", 0, 5), knn("bad", 1, 5), knn("bad", 2, 2)])
    )
    assert rows["good"].verdict == "healthy (2/3)"  # seed 2 ends unstable
    assert rows["bad"].verdict == "collapsed"
    assert rows["bad"].status == "1/3 running" and rows["good"].status == "finished"
    assert any("bad/seed2 is still running" in n and "epoch 2 of 5" in n for n in table.notes)
    best = compare(study, metrics=["epoch_loss"], reduce="best").to_frame().set_index("variant")
    assert best.loc["good", "epoch_loss"] == pytest.approx(np.mean([-0.9, -0.91, -0.92]))


def test_per_run_numbers_are_compared(study):
    table = compare(study)  # eval_linear_top1 is among the defaults when recorded
    good = {r.variant: r for r in table.rows}["good"].cells["eval_linear_top1"]
    assert (good.mean, good.n) == (pytest.approx(0.61), 3)
    bad = {r.variant: r for r in table.rows}["bad"].cells["eval_linear_top1"]
    assert bad.n == 2  # the running run has not been evaluated
    assert "linear top-1 (%)" in table.columns() and "61.0 ± 1.0" in table.format("markdown")


def test_majority():
    assert majority(["collapsed", "collapsed", "healthy"]) == "collapsed (2/3)"
    assert majority(["healthy", "unstable"]) == "healthy/unstable (tie)"
    assert majority([float("nan"), ""]) == ""


def test_formats(study):
    table = compare(
        study, paper={"toy": {"bad": {"ref": "Fig. 2", "top1": 0.1, "outcome": "collapse"}}}
    )
    md = table.format("markdown").splitlines()
    assert md[0].startswith("| variant | seeds | status | loss |") and "paper" in md[0]
    assert md[1].count("---") == md[0].count("|") - 1
    assert "| good | 3 | finished | -0.810 ± 0.010 |" in md[3]
    assert "Fig. 2: 0.1 (collapse)" in md[2]
    latex = table.format("latex")
    assert latex.startswith(r"\begin{tabular}") and r"$\pm$" in latex and r"\bottomrule" in latex
    assert "healthy (2/3)" in latex and r"std z/$\|$z$\|$$\cdot\sqrt{d}$" in latex
    assert "| 1.00 ± 0.00 | 51.0 ± 1.0 |" in md[3]  # std x sqrt(d); kNN shown in %
    rows = table.format("csv").splitlines()
    assert rows[0].startswith("study,variant,seeds,status,epoch_loss,epoch_loss_std,epoch_loss_n")
    assert rows[2].startswith("toy,good,3,finished,-0.81")
    assert ",knn_top1,knn_top1_std,knn_top1_n," in rows[0] and ",0.51," in rows[2]  # raw fraction
    ordered = compare(study, metrics=["knn_top1"], paper={"toy": {"good": "x", "bad": "y"}})
    assert [r.variant for r in ordered.rows] == ["good", "bad"]  # the study file's order
    ranked = compare(study, metrics=["epoch_loss"], sort="epoch_loss")
    assert [r.variant for r in ranked.rows] == ["bad", "good"]  # lower loss first
    assert "\t" in table.format("table")


def test_missing_metric_lists_available(study):
    with pytest.raises(ResultsError, match=r"not in these results: z_rankme.*Available.*knn_top1"):
        compare(study, metrics=["z_rankme"])
    with pytest.raises(ResultsError, match="z_channel_std_eval has dims"):
        compare(study, metrics=["z_channel_std_eval"])


def test_mixed_configs_are_flagged(tmp_path):
    make_run(tmp_path, "good", 0)
    make_run(tmp_path, "good", 1, config={**CONFIG, "optim": {"base_lr": 0.2}})
    make_run(tmp_path, "bad", 0)  # and no seed 1
    ds = open_study(tmp_path / "toy")
    (msg,) = config_conflicts(ds)
    assert "variant good mixes configs" in msg and "optim.base_lr" in msg and "seed1=0.2" in msg
    notes = run_notes(ds)
    assert msg in notes and "bad/seed1 has no results" in " ".join(notes)
    assert {r.variant: r.seeds for r in compare(ds).rows} == {"bad": 1, "good": 2}


def test_std_times_sqrt_d_uses_each_runs_own_d(tmp_path):
    """dimension.yaml varies d: each run's std is scaled by its own sqrt(d)."""
    make_run(tmp_path, "good", 0)  # d = D, std = 1/sqrt(D)
    make_run(tmp_path, "bad", 0, config={**CONFIG, "model": {"dim": 4 * D}})  # std 0.1/sqrt(D)
    table = compare(open_study(tmp_path / "toy"), metrics=["z_std_eval*sqrt(d)"])
    values = {r.variant: r.cells["z_std_eval*sqrt(d)"].mean for r in table.rows}
    assert values == pytest.approx({"good": 1.0, "bad": 0.1 * 2})


def test_several_studies_and_a_results_root(tmp_path):
    make_run(tmp_path / "a", "good", 0)  # a and b are results roots holding a study "toy"
    make_run(tmp_path / "a", "bad", 0)
    make_run(tmp_path / "b", "good", 0)
    studies = load_studies([tmp_path / "a", tmp_path / "b"])
    assert len(studies) == 2
    table = compare(studies, metrics=["knn_top1"])
    assert table.columns()[0] == "study" and len(table.rows) == 3
    assert len(load_studies([tmp_path / "b"])) == 1 and len(load_studies([tmp_path / "a"]))
    with pytest.raises(ResultsError, match="no results under"):
        load_studies([tmp_path / "a" / "toy" / "good"])


def test_cli_compare(study_dir, tmp_path):
    runner = CliRunner()
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "variants": {"good": {}, "bad": {}},
                "paper": {"good": "67.7 +- 0.1", "bad": "0.1 (collapse)"},
            }
        )
    )
    res = runner.invoke(app, ["compare", str(study_dir), "--study", str(study_file)])
    assert res.exit_code == 0, res.output
    assert "good" in res.output and "final value per run" in res.output
    res = runner.invoke(
        app, ["compare", str(study_dir), "--study", str(study_file), "-f", "markdown"]
    )
    assert res.exit_code == 0 and "| healthy (2/3) | 67.7 +- 0.1 |" in res.stdout
    res = runner.invoke(app, ["compare", str(study_dir), "-f", "csv", "-m", "knn_top1"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].endswith("verdict,paper")
    for args, message in [
        (["-m", "nope"], "Available scalar metrics"),
        (["-f", "html"], "--format must be"),
        (["-r", "worst"], "--reduce must be"),
        (["--sort", "lr"], "not a shown metric"),
        (["--study", str(tmp_path / "missing.yaml")], "study file not found"),
    ]:
        res = runner.invoke(app, ["compare", str(study_dir), *args])
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["compare", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "not a folder" in res.output
