"""Every plot kind: a non-empty image file and the expected matplotlib axes."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from scipy import stats
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.errors import ResultsError
from siamlab.plots import KINDS, plot, save_figure
from siamlab.plots.frames import BOOTSTRAP_POINTS, band_frame
from siamlab.plots.ranges import VALUE_RANGES, value_range
from siamlab.results.intervals import mean_interval
from siamlab.results.schema import variables
from siamlab.results.store import open_run, open_study
from tests.conftest import TOY_D as D
from tests.conftest import TOY_EPOCHS as EPOCHS
from tests.conftest import make_run, toy_centre_norm, toy_knn

matplotlib.use("Agg")
REF = 1 / math.sqrt(D)
LABELS = ["bad (running)", "good"]


def legend_texts(fig: Figure) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def labelled_yticks(ax) -> list[str]:
    lo, hi = sorted(ax.get_ylim())
    ticks = zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    return [label.get_text() for y, label in ticks if lo <= y <= hi and label.get_text()]


def dashed_at(ax, y: float) -> bool:
    return any(
        line.get_linestyle() == "--" and list(line.get_ydata()) == [y, y] for line in ax.get_lines()
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_writes_a_non_empty_image(study, tmp_path, kind):
    fig = plot(study, kind)
    for suffix in ("png", "pdf"):
        path = save_figure(fig, tmp_path / f"{kind}.{suffix}")
        assert path.stat().st_size > 5_000
    assert legend_texts(fig)[:2] == LABELS  # one entry per variant, the partial one marked
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert len(labelled_yticks(ax)) >= 2, (kind, ax.get_ylim())  # readable y axis


def test_curves_are_the_three_panels_of_fig2(study):
    fig = plot(study, "curves")
    loss, std, knn = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    assert "loss" in loss.get_ylabel() and "%" in knn.get_ylabel() and "z/‖z‖" in std.get_ylabel()
    assert dashed_at(std, REF) and not dashed_at(knn, REF)
    assert legend_texts(fig) == [*LABELS, f"1/√d = {REF:.3g}"]
    # loss is per step, shown in epochs: 4 steps per epoch -> x ends at epoch 5
    assert max(line.get_xdata().max() for line in loss.get_lines()[:2]) == pytest.approx(EPOCHS)
    # seeds give bands: the good variant has 3 seeds
    assert any(isinstance(c, PolyCollection) for c in knn.collections)
    assert knn.get_lines()[1].get_ydata()[-1] == pytest.approx(100 * 0.51)  # good, mean %


def test_std_panels_have_the_reference_line(study):
    fig = plot(study, "std")
    assert len(fig.axes) == 2
    assert all(dashed_at(ax, REF) for ax in fig.axes)
    assert [ax.get_xlabel() for ax in fig.axes] == ["SGD step", "epoch"]


def test_spectra_are_sorted_on_a_log_axis(study):
    fig = plot(study, "spectra", epoch=2)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and "epoch 2" in ax.get_title()
    good = ax.get_lines()[1].get_ydata()
    assert list(good) == sorted(good, reverse=True) and len(good) == D
    assert "rank" in ax.get_xlabel()


def test_channel_std_log_axis_and_reference(study):
    fig = plot(study, "channel_std")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and dashed_at(ax, REF)
    assert "last epoch" in ax.get_title()  # the running run stops at epoch 2, others at 5


def test_centred_panels_are_centre_and_residual(study):
    fig = plot(study, "centred")
    centre, residual, std, erank = fig.axes
    assert [ax.get_title() for ax in fig.axes] == [
        "centre",
        "residual norm",
        "residual std",
        "residual effective rank",
    ]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    # lines per panel: z, p, h for each variant (z solid, p dashed, h dotted), then references
    styles = [line.get_linestyle() for line in residual.get_lines()]
    assert styles[:6] == ["-", "-", "--", "--", ":", ":"]
    bad_z = residual.get_lines()[0]  # variants in the study's order: bad first
    c = toy_centre_norm("bad", "z", EPOCHS)
    assert bad_z.get_ydata()[-1] == pytest.approx(math.sqrt(1 - c**2))  # |r| = sqrt(1 - |o|^2)
    assert centre.get_lines()[2].get_ydata()[-1] == pytest.approx(toy_centre_norm("bad", "p", 5))
    # the verdict's thresholds (the runs' verdict_* attrs) and the isotropic std
    assert dashed_at(residual, 0.1) and dashed_at(erank, 0.05) and dashed_at(std, 1.0)
    assert not dashed_at(centre, 0.1)
    assert any(isinstance(c, PolyCollection) for c in residual.collections)  # z: band over seeds
    texts = legend_texts(fig)
    assert texts[:2] == LABELS and texts[2:5] == ["z", "p", "h"]


def test_centred_without_p_and_h_or_thresholds(study):
    only_z = study.drop_vars([n for n in study.data_vars if n.startswith(("p_", "h_"))])
    only_z.attrs = {k: v for k, v in only_z.attrs.items() if not k.startswith("verdict_")}
    fig = plot(only_z, "centred")
    assert {line.get_linestyle() for ax in fig.axes for line in ax.get_lines()[:2]} == {"-"}
    assert legend_texts(fig) == [*LABELS, "isotropic"]  # no z/p/h key, no threshold
    with pytest.raises(ResultsError, match="no centred geometry.*z_residual_norm.*'centred'"):
        plot(study.drop_vars("z_residual_norm"), "centred")


def test_missing_data_explains_itself(study):
    bare = study.drop_vars(["z_spectrum", "eta_drift"])
    with pytest.raises(ResultsError, match="no spectra.*channel_std"):
        plot(bare, "spectra")
    with pytest.raises(ResultsError, match="no eta_\\* variables.*Available: loss"):
        plot(bare, "eta")
    with pytest.raises(ResultsError, match="not in these results: knn_top1"):
        plot(study.drop_vars("knn_top1"), "curves")
    with pytest.raises(ResultsError, match="no values at epoch 9; recorded epochs: 1, 2"):
        plot(study, "spectra", epoch=9)
    with pytest.raises(ResultsError, match="unknown plot kind"):
        plot(study, "violin")


def test_cli_plot(study_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "fig2.pdf"
    res = runner.invoke(app, ["plot", str(study_dir), "--kind", "curves", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 5_000 and "still running" in res.output
    res = runner.invoke(app, ["plot", str(study_dir), "--kind", "spectra", "--epoch", "99"])
    assert res.exit_code == 2 and "no values at epoch 99" in res.output
    res = runner.invoke(app, ["plot", str(study_dir), "--kind", "centred"])
    assert res.exit_code == 0, res.output
    assert (study_dir / "figures" / "centred.png").stat().st_size > 5_000
    res = runner.invoke(app, ["plot", str(study_dir), "--kind", "pie"])
    assert res.exit_code == 2 and "unknown --kind" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["plot", str(study_dir), "--kind", "std", "-o", str(tmp_path / "f")])
    assert res.exit_code == 0 and (tmp_path / "f" / "std.png").stat().st_size > 5_000  # a folder


def test_one_run_dataset_is_a_one_run_study(study_dir):
    run = open_run(study_dir / "good" / "seed1")  # notebook use: a single metrics.nc
    fig = plot(run, "curves")
    assert legend_texts(fig)[0] == "good" and len(fig.axes) == 3
    assert not any(isinstance(c, PolyCollection) for ax in fig.axes for c in ax.collections)


def band_at(ax, i: int, x: float) -> tuple[float, float]:
    """(lowest, highest) y of the i-th band at ``x``."""
    vertices = ax.collections[i].get_paths()[0].vertices
    ys = vertices[np.isclose(vertices[:, 0], x), 1]
    return float(ys.min()), float(ys.max())


def test_seed_band_is_the_95_interval_over_seeds(study):
    """Good's kNN at epoch 5: 50, 51, 52 % -> 51 ± t(0.975, 2) * 1 / sqrt(3), as compare."""
    (ax,) = plot(study, "knn").axes
    half = stats.t.ppf(0.975, 2) / np.sqrt(3)
    assert band_at(ax, 1, EPOCHS) == (pytest.approx(51 - half), pytest.approx(51 + half))
    assert ax.get_lines()[1].get_ydata()[-1] == pytest.approx(51)


def test_bands_of_non_negative_variables_stay_at_or_above_0_signed_ones_are_not_clipped(study):
    """Good's seeds at 0, 0, 0.3 (std) and 0, 0, 6 % (kNN): mean - t half-width < 0."""
    ds = study.copy(deep=True)
    for name, top in (("z_std_eval", 0.3), ("knn_top1", 0.06)):
        ds[name].loc[{"variant": "good"}] = 0.0
        ds[name].loc[{"variant": "good", "seed": 2}] = top
    loss, std, knn = plot(ds, "curves").axes
    t = stats.t.ppf(0.975, 2)  # seeds 0, 0, 3m: mean m, half-width t m, so lo = m (1 - t) < 0
    for ax, mean in ((std, 0.1), (knn, 2.0)):
        assert band_at(ax, 1, EPOCHS) == (0.0, pytest.approx(mean * (1 + t)))
        assert ax.get_lines()[1].get_ydata()[-1] == pytest.approx(mean)  # the mean as it was
    iv = mean_interval([-0.5 - 0.01 * s for s in range(3)])  # good's step 20 (epoch 5)
    assert band_at(loss, 1, EPOCHS) == (pytest.approx(iv.lo), pytest.approx(iv.hi))


def test_every_value_range_names_a_declared_variable():
    assert set(VALUE_RANGES) <= set(variables())
    assert all(lo < hi for lo, hi in VALUE_RANGES.values())
    assert value_range("knn_top1", 100) == (0.0, 100.0)
    assert value_range("loss") == (-math.inf, math.inf)


def test_five_seeds_band_is_the_bootstrap_t(tmp_path):
    for seed in range(5):
        make_run(tmp_path, "good", seed)
    (ax,) = plot(open_study(tmp_path / "toy"), "knn").axes
    iv = mean_interval([100 * toy_knn("good", s, EPOCHS) for s in range(5)])  # as compare
    assert iv.method == "bootstrap-t"
    assert band_at(ax, 0, EPOCHS) == (pytest.approx(iv.lo), pytest.approx(iv.hi))


def test_long_series_get_student_t_bands():
    """A per-step series longer than BOOTSTRAP_POINTS: Student t even with 5 seeds (speed)."""
    steps = BOOTSTRAP_POINTS + 1
    values = np.random.default_rng(0).normal(size=(5, steps))  # (seed, step)
    df = pd.DataFrame(
        {"variant": "v", "seed": np.repeat(np.arange(5), steps), "x": np.tile(np.arange(steps), 5)}
    ).assign(value=values.ravel())
    bands = band_frame(df)
    last = bands.iloc[-1]
    half = stats.t.ppf(0.975, 4) * values[:, -1].std(ddof=1) / np.sqrt(5)
    assert (last["lo"], last["hi"]) == (
        pytest.approx(values[:, -1].mean() - half),
        pytest.approx(values[:, -1].mean() + half),
    )
    short = band_frame(df[df["x"] < 50]).iloc[-1]  # 50 points: the bootstrap-t, as compare
    assert short["lo"] == pytest.approx(mean_interval(values[:, 49]).lo)
    assert short["lo"] != pytest.approx(bands.iloc[49]["lo"])


def test_the_loss_panel_names_each_similarity_and_marks_the_cosines_floor(tmp_path):
    from tests.conftest import TOY_CONFIG

    entropy = {**TOY_CONFIG, "objective": {"similarity": "cross_entropy"}}
    make_run(tmp_path, "good", 0, config=entropy)
    loss = plot(open_study(tmp_path / "toy"), "curves").axes[0]
    assert loss.get_ylabel() == "loss (cross-entropy)"
    assert not [line for line in loss.get_lines() if list(line.get_ydata()) == [-1, -1]]
    make_run(tmp_path, "bad", 0)  # cosine, the default
    loss = plot(open_study(tmp_path / "toy"), "curves").axes[0]
    assert loss.get_ylabel() == "loss (negative cosine or cross-entropy)"
    assert [line for line in loss.get_lines() if list(line.get_ydata()) == [-1, -1]]


def test_a_chosen_epoch_says_how_many_runs_have_it(study):
    from siamlab.plots.frames import at_epoch

    _, caption = at_epoch(study, "z_spectrum", EPOCHS)  # bad/seed2 stopped at epoch 2
    assert caption == f"epoch {EPOCHS} (5 of 6 runs have it)"
    assert at_epoch(study, "z_spectrum", 1)[1] == "epoch 1"


def test_each_spectrum_panel_is_floored_at_its_own_largest_eigenvalue(study):
    ds = study.copy()
    ds["h_spectrum"] = ds["z_spectrum"] * 1e8  # raw features: a far larger scale
    fig = plot(ds, "spectra")
    z_panel = next(ax for ax in fig.axes if ax.get_title().startswith("spectrum of z"))
    lowest = min(float(np.nanmin(line.get_ydata())) for line in z_panel.get_lines()[:2])
    assert lowest == pytest.approx(0.1**4.5 / D, rel=1e-6)  # bad's tail, not 1e-12 of h's top
