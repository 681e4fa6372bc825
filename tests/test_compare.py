"""compare: numbers over seeds, run verdicts over seeds and the paper, formats, errors."""

import math
import re

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.diagnostics.verdict_rule import RunVerdict
from siamlab.errors import ResultsError
from siamlab.results.compare import compare, load_studies, reduce_runs
from siamlab.results.run_notes import config_conflicts, run_notes
from siamlab.results.store import open_study
from siamlab.results.verdicts import SeedVerdicts
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
    assert rows["good"].verdict == "healthy 2/3, unstable 1/3"  # seed 2 turns unstable
    assert rows["bad"].verdict == "collapsed?"  # the running seed has not held it 3 evaluations
    assert (rows["good"].onset, rows["bad"].onset) == ("ep 1", "ep 2")
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
    # 0.60, 0.61, 0.62: 61.0 ± t(0.975, 2) * 1 / sqrt(3) = 61.0 ± 2.48 (%)
    assert "linear top-1 (%)" in table.columns() and "61.0 [58.5, 63.5]" in table.format("markdown")


def _runs(*specs: str) -> SeedVerdicts:
    """``collapsed@12`` = collapsed since epoch 12; a trailing ``?`` = provisional."""
    out = []
    for spec in specs:
        name, onset = spec.rstrip("?").split("@")
        out.append(RunVerdict(name, int(onset), "", provisional=spec.endswith("?")))
    return SeedVerdicts(out)


def test_verdict_over_seeds_text_and_onset():
    same = _runs("collapsed@12", "collapsed@12", "collapsed@12")
    assert (same.text(), same.onset_text()) == ("collapsed", "ep 12")
    mixed = _runs("collapsed@10", "healthy@1", "collapsed@14")
    assert mixed.text() == "collapsed 2/3, healthy 1/3"
    assert mixed.onset_text() == "ep 10-14"  # over the seeds of the leading verdict
    assert mixed.onset_range() == (10, 14)
    assert _runs("healthy@1", "collapsed@3?").text() == "healthy 1/2, collapsed? 1/2"  # a tie
    assert _runs("unstable@4?").text() == "unstable?"
    assert (SeedVerdicts([]).text(), SeedVerdicts([]).onset_text()) == ("", "-")


@pytest.mark.parametrize(
    ("runs", "outcome", "agrees"),
    [
        (["collapsed@5", "collapsed@6"], "collapse", "yes"),
        (["healthy@1", "healthy@1"], "collapse", "no"),
        (["healthy@1", "healthy@2"], "no_collapse", "yes"),
        (["collapsed@5", "healthy@1", "collapsed@7"], "collapse", "2/3"),
        (["dimensional_collapse@8"], "collapse", "no"),  # complete collapse only
        (["partial_collapse@6"], "collapse", "yes"),  # on its way: a short run
        (["partial_collapse@6"], "no_collapse", "no"),
        (["dimensional_collapse@8"], "dimensional_collapse", "yes"),
        (["unstable@2"], "unstable", "yes"),
        (["unstable@2"], "diverges", "yes"),  # a diverged run's verdict is unstable
        (["not_converging@1"], "not_converging", "yes"),
        (["not_converging@1"], "no_collapse", "no"),
        (["collapsed@4?"], "collapse", "yes?"),  # provisional: counted, marked
        (["collapsed@4"], None, "-"),
        (["collapsed@4"], "", "-"),
        ([], "collapse", "-"),
    ],
)
def test_agrees_with_the_papers_outcome(runs, outcome, agrees):
    assert _runs(*runs).agrees(outcome) == agrees


def test_agrees_column_and_evidence(study):
    paper = {"toy": {"bad": {"outcome": "collapse"}, "good": {"outcome": "no_collapse"}}}
    table = compare(study, metrics=["knn_top1"], paper=paper)
    assert table.columns()[-4:] == ["verdict", "onset", "agrees", "paper"]
    rows = {r.variant: r for r in table.rows}
    assert (rows["bad"].agrees, rows["good"].agrees) == ("yes?", "2/3")
    assert "bad/seed2: collapsed?, toy bad/seed2 collapsed; since epoch 2" in table.evidence()
    assert len(table.evidence()) == 6 and any("provisional" in n for n in table.notes)
    frame = table.to_frame().set_index("variant")
    assert frame.loc["bad", "agrees"] == "yes?" and frame.loc["bad", "outcome"] == "collapse"
    assert (frame.loc["good", "verdict_onset_first"], frame.loc["good", "verdict_onset_last"]) == (
        1,
        1,
    )
    runs = table.runs_frame().set_index(["variant", "seed"])
    assert (
        runs.loc[("good", 2), "verdict"] == "unstable" and runs.loc[("good", 2), "onset_epoch"] == 3
    )
    assert bool(runs.loc[("bad", 2), "provisional"]) and not runs.loc[("bad", 0), "provisional"]
    no_outcome = compare(study, metrics=["knn_top1"], paper={"toy": {"bad": "a note"}})
    assert "agrees" not in no_outcome.columns() and "onset" in no_outcome.columns()


def test_older_files_take_the_last_per_epoch_state(tmp_path):
    """Written before the run verdict: the last streak of per-epoch states, from its start."""
    for seed in range(3):
        make_run(tmp_path, "good", seed, run_verdict=False)
    make_run(tmp_path, "bad", 0, run_verdict=False)
    rows = {r.variant: r for r in compare(open_study(tmp_path / "toy")).rows}
    assert rows["good"].verdict == "healthy 2/3, unstable 1/3"
    unstable = rows["good"].runs[2]
    assert (unstable.verdict, unstable.onset_epoch, unstable.provisional) == ("unstable", 3, False)
    assert unstable.evidence.startswith("since epoch 3 (no run verdict in this file")
    assert (rows["bad"].verdict, rows["bad"].onset) == ("collapsed", "ep 2")


def test_stopped_collapsed_is_a_finished_collapsed_run(tmp_path):
    make_run(tmp_path, "bad", 0, epochs=3, status="stopped_collapsed", run_verdict=False)
    make_run(tmp_path, "bad", 1, epochs=4, status="stopped_collapsed")  # entered at 4
    make_run(tmp_path, "good", 0)
    ds = open_study(tmp_path / "toy")
    ds = ds.drop_vars("verdict")  # no per-epoch states either: the status says collapsed
    table = compare(ds, paper={"toy": {"bad": {"outcome": "collapse"}}})
    bad = {r.variant: r for r in table.rows}["bad"]
    assert (bad.status, bad.verdict, bad.agrees) == ("stopped_collapsed", "collapsed", "yes")
    assert not any("running" in n for n in table.notes)
    assert [n for n in table.notes if "bad/seed" in n] == [
        f"bad/seed{s} stopped on collapse at epoch {e} of {EPOCHS}; 'final' = that epoch's"
        for s, e in ((0, 3), (1, 4))
    ]


def test_formats(study):
    table = compare(
        study, paper={"toy": {"bad": {"ref": "Fig. 2", "top1": 0.1, "outcome": "collapse"}}}
    )
    md = table.format("markdown").splitlines()
    assert md[0].startswith("| variant | seeds | status | loss |") and "paper" in md[0]
    assert md[1].count("---") == md[0].count("|") - 1
    assert "| good | 3 | finished | -0.810 [-0.835, -0.785] |" in md[3]  # ± t(2) 0.01/√3
    assert "Fig. 2: 0.1 (collapse)" in md[2]
    latex = table.format("latex")
    assert latex.startswith(r"\begin{tabular}") and r"\bottomrule" in latex
    assert "-0.810 [-0.835, -0.785]" in latex and "% final value of each run" in latex
    assert "healthy 2/3, unstable 1/3" in latex and r"std z/$\|$z$\|$$\cdot\sqrt{d}$" in latex
    assert "| 1.00 [1.00, 1.01] | 51.0 [48.5, 53.5] |" in md[3]  # std x sqrt(d); kNN in %
    assert "note: final value of each run; mean [95% interval] over seeds (Student t, n=2-3)" in md
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


def test_seeds_written_to_other_folders_are_not_mixed_configs(tmp_path):
    make_run(tmp_path, "good", 0, config={**CONFIG, "output": {"root": "/a"}})
    make_run(tmp_path, "good", 1, config={**CONFIG, "output": {"root": "/b"}})
    assert config_conflicts(open_study(tmp_path / "toy")) == []


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
    assert "good" in res.output and "final value of each run" in res.output
    res = runner.invoke(
        app, ["compare", str(study_dir), "--study", str(study_file), "-f", "markdown"]
    )
    assert res.exit_code == 0 and "| healthy 2/3, unstable 1/3 | ep 1 | 67.7 +- 0.1 |" in res.stdout
    res = runner.invoke(app, ["compare", str(study_dir), "-f", "csv", "-m", "knn_top1"])
    head = "verdict,verdict_onset_first,verdict_onset_last,agrees,outcome,paper"
    assert res.exit_code == 0 and res.stdout.splitlines()[0].endswith(head)
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


@pytest.mark.parametrize(("width", "tables"), [(60, 2), (80, 2), (120, 1), (200, 1)])
def test_cli_compare_verdicts_fit_the_terminal(study_dir, tmp_path, monkeypatch, width, tables):
    """Verdict, onset and agrees beside the metrics, or in a 2nd table when they do not fit.

    At 120 the paper's notes go below (they would get too few characters beside), and
    then the verdicts fit beside the numbers.
    """
    from siamlab.cli.app import console

    monkeypatch.setattr(console, "width", width)
    study_file = tmp_path / "toy.yaml"
    paper = {"good": {"outcome": "no_collapse"}, "bad": {"outcome": "collapse", "note": "x"}}
    study_file.write_text(
        yaml.safe_dump({"name": "toy", "variants": {"good": {}, "bad": {}}, "paper": paper})
    )
    res = CliRunner().invoke(app, ["compare", str(study_dir), "--study", str(study_file)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert sum(bool(re.match(r"^ variant ", ln)) for ln in lines) == tables
    assert any(re.search(r"^ bad .*collapsed\?\s+ep 2\s+yes\?", ln) for ln in lines)
    assert ("paper, bad: " in res.stdout) == (width < 200)  # below, or beside at 200
    assert any(
        re.search(r"^ good .*healthy( 2/3,)?( unstable 1/3)?\s+ep 1\s+2/3", ln) for ln in lines
    )
    words = " ".join(res.stdout.split())  # evidence lines wrap at the terminal's width
    assert "bad/seed2: collapsed?, toy bad/seed2 collapsed; since epoch 2" in words
    assert "good/seed2: unstable, toy good/seed2 unstable; since epoch 3" in words


def test_best_of_every_loss_is_its_minimum_and_sort_ranks_it_so(tmp_path):
    from siamlab.results.reduce import lower_is_better

    assert all(map(lower_is_better, ["loss", "epoch_loss", "cosine_loss", "start_loss"]))
    assert not any(map(lower_is_better, ["knn_top1", "z_std_eval", "loss_noise"]))
    make_run(tmp_path, "good", 0)
    make_run(tmp_path, "bad", 0)
    ds = open_study(tmp_path / "toy")
    ds["cosine_loss"] = ds["epoch_loss"] - 1.0  # a judged negative cosine, falling
    best = reduce_runs(ds, "cosine_loss", "best")
    assert (best == ds["cosine_loss"].min("epoch")).all()
    table = compare(ds, metrics=["cosine_loss"], sort="cosine_loss")
    means = [r.cells["cosine_loss"].mean for r in table.rows]
    assert means == sorted(means)  # the lowest loss first


def test_h_std_times_sqrt_d_uses_the_backbones_width(tmp_path):
    """h's d is the backbone's C (8 x width for the convnet), not the projector's dim."""
    config = {**CONFIG, "model": {"dim": D, "backbone": "convnet_small", "width": 4}}
    make_run(tmp_path, "good", 0, config=config)
    ds = open_study(tmp_path / "toy")
    ds["h_std_eval"] = ds["z_std_eval"] * 0 + 1 / math.sqrt(32)  # spread over C = 32 channels
    table = compare(ds, metrics=["h_std_eval*sqrt(d)", "h_std_eval"])
    assert table.rows[0].cells["h_std_eval*sqrt(d)"].mean == pytest.approx(1.0)
    assert not any("std reference" in n for n in table.notes)  # 1/sqrt(d) is z's, not h's


def test_a_seed_stopped_on_collapse_is_named_in_the_status_and_notes(tmp_path):
    make_run(tmp_path, "bad", 0)
    make_run(tmp_path, "bad", 1)
    make_run(tmp_path, "bad", 2, epochs=3, status="stopped_collapsed")
    table = compare(open_study(tmp_path / "toy"))
    (row,) = table.rows
    assert row.status == "1/3 stopped_collapsed"
    assert f"bad/seed2 stopped on collapse at epoch 3 of {EPOCHS}; 'final' = that epoch's" in (
        table.notes
    )


def test_a_seed_without_a_verdict_is_named_beside_the_verdict_of_the_others(tmp_path):
    make_run(tmp_path, "bad", 0)
    make_run(tmp_path, "bad", 1)
    make_run(tmp_path, "bad", 2, run_verdict=False)  # no run verdict ...
    ds = open_study(tmp_path / "toy").drop_vars("verdict")  # ... nor per-epoch states
    table = compare(ds)
    (row,) = table.rows
    assert row.verdict == "collapsed" and len(row.seed_verdicts().runs) == 2
    assert "bad: 1 of 3 seeds have no verdict yet; its verdict counts the others" in table.notes
