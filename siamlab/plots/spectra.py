"""Representation spectra: sorted eigenvalues of the covariance on a log axis (Jing et al.).

Dimensional collapse (Jing et al., ICLR 2022) shows as eigenvalues that fall off a
cliff: a healthy representation has a slowly decaying spectrum, a collapsed one a few
large eigenvalues and the rest at numerical zero. Eigenvalues are clamped at
:data:`FLOOR` times the largest one plotted before the log axis, so zeros stay visible.
"""

import xarray as xr
from matplotlib.figure import Figure

from siamlab.errors import ResultsError
from siamlab.plots.frames import at_epoch, profile_frame, variant_labels
from siamlab.plots.style import (
    add_legend,
    log_axis,
    new_figure,
    palette,
    paper_style,
    variant_lines,
)
from siamlab.results.runinfo import as_study

FLOOR = 1e-12
TITLES = {
    "z_spectrum": ("z", "projector output"),
    "p_spectrum": ("p", "predictor output"),
    "h_spectrum": ("h", "backbone features"),
}


def spectrum_variables(ds: xr.Dataset) -> list[str]:
    """The ``*_spectrum`` variables over (epoch, component), z, p, h first.

    Per-stage spectra (also over ``stage``) are drawn by ``--kind stages``.
    """
    found = [
        str(n)
        for n in ds.data_vars
        if str(n).endswith("_spectrum") and "epoch" in ds[n].dims and "stage" not in ds[n].dims
    ]
    return sorted(found, key=lambda n: (list(TITLES).index(n) if n in TITLES else 9, n))


def plot_spectra(
    ds: xr.Dataset, epoch: int | None = None, names: list[str] | None = None
) -> Figure:
    """One panel per spectrum: eigenvalue vs rank (1 = largest), log y, one hue per variant.

    Lines are the mean over seeds, bands the min-max over seeds (never below 0 on a log axis);
    values below 1e-12 of a panel's largest eigenvalue are drawn at that floor.

    Args:
        ds: the study Dataset.
        epoch: which epoch; default each run's last recorded one.
        names: spectrum variables to show; default every one present.

    Raises:
        ResultsError: no spectra recorded, or none at ``epoch``.
    """
    ds = as_study(ds)
    available = spectrum_variables(ds)
    names = names or available
    missing = [n for n in names if n not in available]
    if not names or missing:
        what = ", ".join(missing) if missing else f"spectra ({', '.join(TITLES)})"
        raise ResultsError(
            f"no {what} in these results: spectra come from the spectrum diagnostics. "
            f"Variables present: {', '.join(map(str, ds.data_vars))}. "
            "Try --kind channel_std for the per-channel std of z instead."
        )
    picked = {n: at_epoch(ds, n, epoch) for n in names}
    variants = [str(v) for v in ds["variant"].values]
    with paper_style():
        fig = new_figure(len(names), height=2.4)
        for ax, name in zip(fig.axes, names, strict=True):
            da, caption = picked[name]
            top = float(da.max())  # each panel's floor: FLOOR of its own largest eigenvalue
            df = profile_frame(da, FLOOR * top if top > 0 else FLOOR)
            variant_lines(ax, df, variants, ("pi", 100))
            log_axis(ax)
            ax.set_xlim(1, df["x"].max())
            symbol, what = TITLES.get(name, (name.removesuffix("_spectrum"), name))
            ax.set_title(f"spectrum of {symbol}\n({what}, {caption})")
            ax.set_xlabel("eigenvalue rank (1 = largest)")
            ax.set_ylabel("eigenvalue of cov. (log scale)")
        add_legend(fig, variant_labels(ds), palette(variants))
        return fig
