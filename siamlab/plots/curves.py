"""Training curves over seeds: Fig. 2 (loss, output std, kNN), the std and kNN panels.

Each line is a variant's mean over seeds, the band its 95% interval over seeds
(Student t for 2-4 seeds, bootstrap-t from 5, as ``siamlab compare``; no band for one
seed). Every function takes a study Dataset
(:func:`siamlab.results.store.open_study`) and returns a :class:`~matplotlib.figure.Figure`.
"""

import textwrap

import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from siamlab.errors import ResultsError
from siamlab.plots.frames import band_frame, series_frame, steps_per_epoch, variant_labels
from siamlab.plots.ranges import value_range
from siamlab.plots.style import (
    add_legend,
    new_figure,
    palette,
    paper_style,
    reference_line,
    seed_bands,
)
from siamlab.results.runinfo import (
    as_study,
    check_metrics,
    run_config,
    scalar_metrics,
    std_reference,
)

STD = "std of z/‖z‖"
ETA_LABELS = {  # name -> (title, y label); others use long_name and the name
    "eta_drift": ("drift of the targets eta_x", "distance (unit-normalised)"),
    "eta_cosine": ("cosine of F(T(x)) and eta_x", "cosine"),
    "eta_age": ("age of the targets", "age"),
}


def line_panel(
    ax: Axes, ds: xr.Dataset, name: str, scale: float = 1.0, x_scale: float = 1.0
) -> None:
    """Draw ``name`` on ``ax``: one line per variant (mean over seeds), its 95% band.

    The band is the compare table's interval over seeds at each point
    (:func:`~siamlab.plots.frames.band_frame`), clipped to the values ``name`` can take
    (:func:`~siamlab.plots.ranges.value_range`); a variant of one seed is a line alone.

    Args:
        ax: the axes to draw on.
        ds: the study Dataset.
        name: a variable over step or epoch.
        scale: multiply values (e.g. 100 for %).
        x_scale: multiply the x values (e.g. 1/steps-per-epoch to plot steps in epochs).
    """
    df = series_frame(ds, name, scale)
    df["x"] = df["x"] * x_scale
    variants = [str(v) for v in ds["variant"].values]
    seed_bands(ax, band_frame(df, value_range(name, scale)), variants)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # readable in narrow panels


def _finish(fig: Figure, ds: xr.Dataset, reference: bool = False) -> Figure:
    variants = [str(v) for v in ds["variant"].values]
    ref = std_reference(ds) if reference else None
    text = f"1/√d = {ref:.3g}" if ref is not None else None
    add_legend(fig, variant_labels(ds), palette(variants), text)
    return fig


def _std_reference(ax: Axes, ds: xr.Dataset) -> None:
    ref = std_reference(ds)
    if ref is not None:
        reference_line(ax, ref)


LOSS_NAMES = {"cosine": "negative cosine", "cross_entropy": "cross-entropy"}


def _similarities(ds: xr.Dataset) -> set[str]:
    """The similarities (``objective.similarity``) the runs' configs name."""
    configs = (run_config(text) for text in ds["config"].values.ravel() if text)
    return {str(c.get("objective", {}).get("similarity", "cosine")) for c in configs if c}


def plot_curves(ds: xr.Dataset) -> Figure:
    """The three panels of the paper's Fig. 2: training loss, output std, kNN accuracy.

    Loss is per SGD step (shown in epochs); std (eval-mode BN, test split, with the
    dashed 1/sqrt(d) line) and kNN top-1 are per epoch.

    Raises:
        ResultsError: the results lack ``loss``, ``z_std_eval`` or ``knn_top1``.
    """
    ds = as_study(ds)
    loss = "loss" if "loss" in scalar_metrics(ds) else "epoch_loss"
    check_metrics(ds, [loss, "z_std_eval", "knn_top1"])
    spe = steps_per_epoch(ds) if loss == "loss" else 1
    with paper_style():
        fig = new_figure(3)
        ax_loss, ax_std, ax_knn = fig.axes
        line_panel(ax_loss, ds, loss, x_scale=1 / spe if spe else 1.0)
        similarities = _similarities(ds)
        if "cosine" in similarities:  # the negative cosine's floor
            ax_loss.axhline(-1, color="0.6", linestyle=":", linewidth=0.8, zorder=1)
        named = " or ".join(LOSS_NAMES.get(s, s) for s in sorted(similarities))
        ax_loss.set(title="training loss", ylabel=f"loss ({named or 'negative cosine'})")
        ax_loss.set_xlabel("epoch" if spe else "SGD step")
        line_panel(ax_std, ds, "z_std_eval")
        ax_std.set_ylim(bottom=0)
        _std_reference(ax_std, ds)
        ax_std.set(title="output std (eval BN, test split)", xlabel="epoch", ylabel=STD)
        line_panel(ax_knn, ds, "knn_top1", scale=100)
        ax_knn.set(title="kNN accuracy (test split)", xlabel="epoch", ylabel="kNN top-1 (%)")
        if spe:  # every panel in epochs: share one x range
            right = max(ax.get_xlim()[1] for ax in fig.axes)
            for ax in fig.axes:
                ax.set_xlim(0, right)
        return _finish(fig, ds, reference=True)


def plot_std(ds: xr.Dataset) -> Figure:
    """Std of z/||z||: train-mode BN on each batch (per step) and eval-mode BN on the test split.

    Both panels carry the dashed 1/sqrt(d) line, the std of a uniform spread on the
    unit sphere. The train-mode std resists collapse (BN re-standardises each batch).

    Raises:
        ResultsError: neither ``z_std_train`` nor ``z_std_eval`` is recorded.
    """
    ds = as_study(ds)
    names = [n for n in ("z_std_train", "z_std_eval") if n in scalar_metrics(ds)]
    if not names:
        check_metrics(ds, ["z_std_eval"])
    titles = {"z_std_train": "train-mode BN, training batch", "z_std_eval": "eval BN, test split"}
    with paper_style():
        fig = new_figure(len(names))
        for ax, name in zip(fig.axes, names, strict=True):
            line_panel(ax, ds, name)
            ax.set_ylim(bottom=0)
            _std_reference(ax, ds)
            dim = "SGD step" if "step" in ds[name].dims else "epoch"
            ax.set(title=f"{STD} ({titles[name]})", xlabel=dim, ylabel=STD)
        return _finish(fig, ds, reference=True)


def plot_knn(ds: xr.Dataset) -> Figure:
    """Weighted kNN top-1 (%) on the test split over epochs (Fig. 2 right), column width."""
    ds = as_study(ds)
    check_metrics(ds, ["knn_top1"])
    with paper_style():
        fig = new_figure(1)
        (ax,) = fig.axes
        line_panel(ax, ds, "knn_top1", scale=100)
        ax.set(title="kNN accuracy (test split)", xlabel="epoch", ylabel="kNN top-1 (%)")
        return _finish(fig, ds)


def plot_eta(ds: xr.Dataset) -> Figure:
    """Every ``eta_*`` series (drift of the EM targets, Sec. 5), one panel each.

    Raises:
        ResultsError: no ``eta_*`` variables (only eta studies record them).
    """
    ds = as_study(ds)
    names = [
        n
        for n in scalar_metrics(ds)
        if n.startswith("eta_") and {"step", "epoch"} & set(ds[n].dims)
    ]
    if not names:
        raise ResultsError(
            "no eta_* variables in these results: eta drift is recorded by the k-step and "
            f"moving-average eta studies. Available: {', '.join(scalar_metrics(ds))}"
        )
    with paper_style():
        fig = new_figure(len(names), width=min(7.0, 2.4 * len(names) + 1.0))
        for ax, name in zip(fig.axes, names, strict=True):
            line_panel(ax, ds, name)
            attrs = ds[name].attrs
            unit = str(attrs.get("units", "1"))
            title, label = ETA_LABELS.get(name, (str(attrs.get("long_name", name)), name))
            ax.set_title(textwrap.shorten(title, 34))
            ax.set_ylabel(label + ("" if unit == "1" else f" ({unit})"))
            ax.set_xlabel("SGD step" if "step" in ds[name].dims else "epoch")
        return _finish(fig, ds)
