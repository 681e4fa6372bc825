"""Per-channel std of z/||z||: the distribution over channels at one epoch.

Channels are sorted by std (largest first) and drawn on a log axis with the dashed
1/sqrt(d) line: a healthy representation keeps every channel near 1/sqrt(d); complete
collapse drops them all, dimensional collapse only the tail.
"""

import xarray as xr
from matplotlib.figure import Figure

from siamlab.plots.frames import at_epoch, profile_frame, variant_labels
from siamlab.plots.style import (
    add_legend,
    log_axis,
    new_figure,
    palette,
    paper_style,
    reference_line,
    variant_lines,
)
from siamlab.results.runinfo import as_study, check_metrics, std_reference

NAME = "z_channel_std_eval"
FLOOR = 1e-12


def plot_channel_std(ds: xr.Dataset, epoch: int | None = None) -> Figure:
    """Sorted per-channel std of z/||z|| (eval BN, test split) per variant, log y.

    Lines are the mean over seeds at each rank, bands the min-max over seeds.

    Args:
        ds: the study Dataset.
        epoch: which epoch; default each run's last recorded one.

    Raises:
        ResultsError: the results lack ``z_channel_std_eval`` or a value at ``epoch``.
    """
    ds = as_study(ds)
    check_metrics(ds, [NAME], scalar=False)
    da, caption = at_epoch(ds, NAME, epoch)
    variants = [str(v) for v in ds["variant"].values]
    with paper_style():
        fig = new_figure(1, height=2.6)
        (ax,) = fig.axes
        df = profile_frame(da, FLOOR)
        variant_lines(ax, df, variants, ("pi", 100))
        ax.set_yscale("log")
        ax.set_xlim(1, df["x"].max())
        ref = std_reference(ds)
        if ref is not None:
            reference_line(ax, ref)
        log_axis(ax)
        ax.set_title(f"per-channel std of z/‖z‖ (eval BN, test split)\n{caption}")
        ax.set_xlabel("channel rank (1 = largest std)")
        ax.set_ylabel("std of z/‖z‖ (log)")
        text = f"1/√d = {ref:.3g}" if ref is not None else None
        add_legend(fig, variant_labels(ds), palette(variants), text)
        return fig
