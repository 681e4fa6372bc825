"""Centred geometry over training: the centre of z/|z| and the residual around it.

Four panels over epochs (Zhang et al., ICLR 2022; docs/diagnostics.md#centred-geometry):
the centre norm ``||o||`` with ``o = E[z/|z|]``, the residual norm
``sqrt(E||z/|z| - o||^2) = sqrt(1 - ||o||^2)``, the residual's channel std times sqrt(d)
and its effective rank over min(d, N). Complete collapse is the residual norm going to
0; a large centre over a residual that keeps its std and rank is not collapse. z is
drawn solid with its 95% band over seeds; p and h, when recorded, dashed and dotted, lighter.
The verdict's thresholds (the results' ``verdict_*`` attrs) are dashed grey.
"""

import math

import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from siamlab.errors import ResultsError
from siamlab.plots.frames import band_frame, series_frame, variant_labels
from siamlab.plots.ranges import value_range
from siamlab.plots.style import (
    PANEL_HEIGHT,
    add_legend,
    new_figure,
    palette,
    paper_style,
    reference_line,
    seed_bands,
)
from siamlab.results.runinfo import as_study, scalar_metrics

MEASURES = (  # variable suffix, title, y label, the verdict attrs of its thresholds
    ("centre_norm", "centre", "‖o‖, o = E[z/‖z‖]", ()),
    (
        "residual_norm",
        "residual norm",
        "√E‖z/‖z‖ − o‖²",
        ("verdict_collapsed_residual_norm", "verdict_partial_residual_norm"),
    ),
    ("residual_std", "residual std", "std(r/‖r‖)·√d", ("verdict_partial_residual_std",)),
    (
        "residual_erank_fraction",
        "residual effective rank",
        "erank(r/‖r‖) / min(d, N)",
        ("verdict_dimensional_erank_fraction", "verdict_partial_erank_fraction"),
    ),
)
BRANCH_STYLE = {"z": ("-", 1.0), "p": ("--", 0.6), "h": (":", 0.6)}  # linestyle, alpha


def _threshold(ds: xr.Dataset, attr: str) -> float | None:
    value = ds.attrs.get(attr)
    try:
        number = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _panel(ax: Axes, ds: xr.Dataset, suffix: str, branches: list[str]) -> None:
    variants = [str(v) for v in ds["variant"].values]
    for branch in branches:
        style, alpha = BRANCH_STYLE[branch]
        name = f"{branch}_{suffix}"
        bands = band_frame(series_frame(ds, name), value_range(name))
        seed_bands(ax, bands, variants, branch == "z", linestyle=style, alpha=alpha)  # z only
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def plot_centred(ds: xr.Dataset) -> Figure:
    """Centre norm, residual norm, residual std·√d and residual erank fraction of z.

    Raises:
        ResultsError: the results lack the centred geometry of z (the ``centred`` hook).
    """
    ds = as_study(ds)
    present = scalar_metrics(ds)
    needed = [f"z_{suffix}" for suffix, *_ in MEASURES]
    if missing := [n for n in needed if n not in present]:
        raise ResultsError(
            f"no centred geometry in these results ({', '.join(missing)} missing): it is "
            "recorded by the 'centred' diagnostics hook, which results written before it "
            f"lack. Available: {', '.join(present) or '(none)'}"
        )
    with paper_style():
        fig = new_figure(len(MEASURES), height=0.9 * PANEL_HEIGHT, rows=2)
        thresholds = False
        for ax, (suffix, title, ylabel, attrs) in zip(fig.axes, MEASURES, strict=True):
            branches = [b for b in BRANCH_STYLE if f"{b}_{suffix}" in present]
            _panel(ax, ds, suffix, branches)
            ax.set(title=title, xlabel="epoch", ylabel=ylabel)
            if value_range(f"z_{suffix}")[1] == 1.0:  # a norm or fraction of unit vectors
                ax.set_ylim(0, 1.02)
            else:
                ax.set_ylim(bottom=0)
                reference_line(ax, 1.0)  # isotropic residual
            for attr in attrs:  # collapsed / dimensional, then partial_collapse's
                if (value := _threshold(ds, attr)) is not None:
                    reference_line(ax, value)
                    thresholds = True
        shown = [b for b in BRANCH_STYLE if any(f"{b}_{s}" in present for s, *_ in MEASURES)]
        styles = [(b, *BRANCH_STYLE[b]) for b in shown] if len(shown) > 1 else []
        variants = [str(v) for v in ds["variant"].values]
        reference = "verdict threshold; std·√d 1 = isotropic" if thresholds else "isotropic"
        add_legend(fig, variant_labels(ds), palette(variants), reference, styles)
        return fig
