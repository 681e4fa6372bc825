"""Per-stage spectra: how far into the backbone a collapse reaches.

One column per backbone stage (input to output, the last one's pooled output is h). Top:
RankMe (thin) and effective rank (wide, light) of the stage's pooled output over epochs,
one colour per variant with its band over seeds; a collapse that starts at the projector
shows here as the last stages losing rank while the early ones keep theirs. Bottom: the
stage's covariance spectrum at one epoch on a log axis (Jing et al., ICLR 2022), as
:func:`~siamlab.plots.spectra.plot_spectra` draws z, p and h.
"""

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from siamlab.errors import ResultsError
from siamlab.plots.frames import at_epoch, band_frame, profile_frame, series_frame, variant_labels
from siamlab.plots.ranges import value_range
from siamlab.plots.style import (
    add_legend,
    log_axis,
    new_figure,
    palette,
    paper_style,
    seed_bands,
    variant_lines,
)
from siamlab.results.runinfo import as_study

NEEDED = ("stage_rankme", "stage_erank", "stage_spectrum")
FLOOR = 1e-12  # eigenvalues are drawn no lower than this x the panel's largest
# (variable, legend text, line style): the effective rank is RankMe without its eps, so
# the two coincide except near rank 1; it is drawn first, wide and light, under RankMe
RANKS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("stage_erank", "effective rank (wide, light)", {"linewidth": 3.5, "alpha": 0.35}),
    ("stage_rankme", "RankMe", {}),
)


def _rank_panel(ax: Axes, ds: xr.Dataset, stage: str, variants: list[str]) -> None:
    """Effective rank (wide, light) and RankMe (thin, on top) of ``stage`` over epochs."""
    for name, _, style in RANKS:
        one = ds.assign({name: ds[name].sel(stage=stage, drop=True)})
        bands = band_frame(series_frame(one, name), value_range(name))
        seed_bands(ax, bands, variants, **style)
    ax.set_ylim(0, 1.1 * max(float(np.nanmax(ds[n].sel(stage=stage))) for n, _, _ in RANKS))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def _spectrum_panel(ax: Axes, spectrum: xr.DataArray, variants: list[str]) -> None:
    """The stage's spectrum (NaN past its width) against rank, log y."""
    top = float(spectrum.max())
    df = profile_frame(spectrum, FLOOR * top if top > 0 else FLOOR)
    variant_lines(ax, df, variants, ("pi", 100))
    log_axis(ax)
    ax.set_xlim(1, df["x"].max())


def plot_stages(ds: xr.Dataset, epoch: int | None = None) -> Figure:
    """Rank over epochs and spectrum at ``epoch`` of each backbone stage's pooled output.

    Args:
        ds: the study Dataset.
        epoch: the spectra's epoch; default each run's last recorded one.

    Raises:
        ResultsError: no per-stage values recorded (the ``stages`` hook), or none at ``epoch``.
    """
    ds = as_study(ds)
    missing = [n for n in NEEDED if n not in ds.data_vars]
    if missing:
        raise ResultsError(
            f"no {', '.join(missing)} in these results: per-stage spectra come from the "
            "`stages` diagnostics hook (diagnostics.hooks; on by default since it was added). "
            "Try --kind spectra for the spectra of z, p and h instead."
        )
    spectra, caption = at_epoch(ds, "stage_spectrum", epoch)
    stages = [str(s) for s in ds["stage"].values]
    variants = [str(v) for v in ds["variant"].values]
    with paper_style():
        fig = new_figure(2 * len(stages), height=2.0, rows=2)
        for k, stage in enumerate(stages):
            ax_rank, ax_spec = fig.axes[k], fig.axes[len(stages) + k]
            one = spectra.sel(stage=stage, drop=True)
            width = int(np.isfinite(one.values).sum(axis=-1).max())
            last = " = h" if k == len(stages) - 1 else ""
            _rank_panel(ax_rank, ds, stage, variants)
            ax_rank.set(title=f"{stage}{last}, {width} ch.", xlabel="epoch", ylabel="rank")
            _spectrum_panel(ax_spec, one, variants)
            ax_spec.set(
                title=f"spectrum, {caption}", xlabel="eigenvalue rank", ylabel="eigenvalue (log)"
            )
        styles = [(label, "-", style.get("alpha", 1.0)) for _, label, style in RANKS]
        add_legend(fig, variant_labels(ds), palette(variants), styles=styles)
        return fig
