"""compare over seeds: each cell's 95% interval, the difference vs a variant, the same numbers
from the DataFrame and xarray APIs, and the CLI's --vs."""

import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.errors import ResultsError
from siamlab.results.compare import compare, load_studies
from tests.conftest import TOY_EPOCHS as EPOCHS
from tests.conftest import make_run
from tests.conftest import toy_knn as knn

# the toy study's final kNN: good seeds at epoch 5, bad seeds 0, 1 at 5 and 2 (running) at 2
GOOD = [knn("good", s, EPOCHS) for s in range(3)]
BAD = [knn("bad", 0, EPOCHS), knn("bad", 1, EPOCHS), knn("bad", 2, 2)]


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's 95% interval of mean(a) - mean(b), written out."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    nu = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    d, half = np.mean(a) - np.mean(b), stats.t.ppf(0.975, nu) * math.sqrt(va + vb)
    return d, d - half, d + half


def test_cells_hold_the_student_t_interval(study):
    table = compare(study, metrics=["knn_top1"])
    good = {r.variant: r for r in table.rows}["good"].cells["knn_top1"]
    half = stats.t.ppf(0.975, 2) * np.std(GOOD, ddof=1) / math.sqrt(3)
    assert (good.lo, good.hi) == (pytest.approx(0.51 - half), pytest.approx(0.51 + half))
    assert good.method == "Student t" and good.std == pytest.approx(0.01)
    assert table.captions() == [
        "final value of each run; mean [95% interval] over seeds (Student t, n=3)"
    ]


def test_difference_vs_a_variant(study):
    table = compare(study, metrics=["knn_top1", "epoch_loss"], vs="good")
    rows = {r.variant: r for r in table.rows}
    d = rows["bad"].diffs["knn_top1"]
    assert (d.diff, d.lo, d.hi) == pytest.approx(welch(BAD, GOOD))
    assert d.excludes_zero and (d.n, d.n_ref) == (3, 3) and rows["good"].diffs == {}
    columns = table.columns()
    assert columns[3:7] == ["kNN top-1 (%)", "loss", "Δ kNN top-1 (%)", "Δ loss"]
    assert columns[-2:] == ["verdict", "onset"]  # the verdict columns stay
    md = table.format("markdown")
    assert "| 9.00 [2.43, 15.57] | -0.980 [-1.005, -0.955] | -42.0* [-47.7, -36.3] |" in md
    assert "| ref | ref | healthy 2/3, unstable 1/3 | ep 1 |" in md
    assert "note: Δ = mean − mean of good [95% interval, Welch t, unpaired]; * excludes 0" in md
    frame = table.to_frame().set_index("variant")
    assert frame.loc["bad", "knn_top1_diff_lo"] == pytest.approx(d.lo)
    assert (
        bool(frame.loc["bad", "knn_top1_diff_excludes_zero"]) and frame.loc["bad", "vs"] == "good"
    )
    assert math.isnan(frame.loc["good", "knn_top1_diff"])


def test_the_frames_and_the_dataset_hold_the_tables_numbers(study):
    table = compare(study, vs="bad")
    ds = table.to_dataset()
    assert list(ds["metric"].values) == table.metrics and ds.attrs["vs"] == "bad"
    long = table.intervals().set_index(["variant", "metric"])
    wide = table.to_frame().set_index("variant")
    for r in table.rows:
        for m, c in r.cells.items():
            at = ds.sel(study="toy", variant=r.variant, metric=m)
            assert (
                float(at["lo"]) == wide.loc[r.variant, f"{m}_lo"] == long.loc[(r.variant, m), "lo"]
            )
            assert (float(at["mean"]), float(at["hi"]), int(at["n"])) == (c.mean, c.hi, c.n)
            assert str(at["method"].values) == c.method
            if r.variant == "good":
                assert float(at["diff"]) == r.diffs[m].diff == long.loc[(r.variant, m), "diff"]


def test_one_seed_shows_its_value_and_says_so(tmp_path):
    make_run(tmp_path, "good", 0)
    make_run(tmp_path, "good", 1)
    make_run(tmp_path, "bad", 0)
    table = compare(load_studies([tmp_path / "toy"]), metrics=["knn_top1"], vs="good")
    assert table.captions()[0].endswith("(Student t, n=2; 1 seed: no interval)")
    text = {r[0]: r for r in table.text_rows()}
    assert text["bad"][3] == "10.0"  # its value, no interval
    assert text["bad"][4].startswith("-40.5")  # one seed: the difference, no interval
    assert "[" not in text["bad"][4] and text["good"][4] == "ref"


def test_vs_errors_and_a_study_without_the_variant(tmp_path):
    make_run(tmp_path / "a", "good", 0)
    make_run(tmp_path / "a", "bad", 0)
    make_run(tmp_path / "b", "bad", 0)
    studies = {
        "a": load_studies([tmp_path / "a"])["toy"],
        "b": load_studies([tmp_path / "b"])["toy"],
    }
    table = compare(studies, metrics=["knn_top1"], vs="good")
    assert "b: no variant good, so no differences" in table.notes
    i = table.columns().index("Δ kNN top-1 (%)")
    cells = {(r[0], r[1]): r[i] for r in table.text_rows()}
    assert cells == {("a", "good"): "ref", ("a", "bad"): "-40.0", ("b", "bad"): "-"}
    with pytest.raises(ResultsError, match="--vs nope: no such variant; variants: bad, good"):
        compare(studies, vs="nope")


def test_cli_compare_vs(study_dir):
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(study_dir), "-m", "knn_top1", "--vs", "good"])
    assert res.exit_code == 0, res.output
    words = " ".join(res.stdout.split())
    assert "mean [95% interval] over seeds (Student t, n=3)" in words
    assert "Δ = mean − mean of good [95% interval, Welch t, unpaired]; * excludes 0" in words
    assert "-42.0* [-47.7,-36.3]" in words and "ref" in words
    res = runner.invoke(app, ["compare", str(study_dir), "--vs", "nope"])
    assert res.exit_code == 2 and "no such variant" in res.output and "Traceback" not in res.output


def test_five_seeds_get_the_bootstrap_t_and_say_so(tmp_path):
    for seed in range(5):
        make_run(tmp_path, "good", seed)
    table = compare(load_studies([tmp_path / "toy"]), metrics=["knn_top1"])
    cell = table.rows[0].cells["knn_top1"]
    assert cell.method == "bootstrap-t" and cell.lo < cell.mean < cell.hi
    assert table.captions()[0].endswith("over seeds (bootstrap-t, n=5)")
