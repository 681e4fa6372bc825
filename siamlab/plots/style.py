"""Figure style for paper columns: sizes, fonts, one stable colour per variant, saving.

Figures are built as :class:`matplotlib.figure.Figure` objects without pyplot, so the
library needs no GUI backend and leaves global state alone; notebooks display them
as usual. Sizes are in inches: a single-column figure is :data:`COLUMN_WIDTH` wide, a
figure spanning the page :data:`TEXT_WIDTH`; fonts are 7-8 pt, as printed.
"""

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

COLUMN_WIDTH = 3.4
TEXT_WIDTH = 7.0
PANEL_HEIGHT = 2.3
REFERENCE_COLOR = "0.25"
Color = tuple[float, float, float]

RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "lines.linewidth": 1.2,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "axes.titlepad": 4,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable in the PDF
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Seaborn's ticks style with a light grid and :data:`RC`, only inside the block."""
    style = sns.axes_style("ticks", {"axes.grid": True, "grid.color": ".9"})
    with style, mpl.rc_context(RC):  # type: ignore[arg-type]
        yield


def new_figure(
    panels: int, width: float | None = None, height: float = PANEL_HEIGHT, rows: int = 1
) -> Figure:
    """A figure with ``panels`` axes in ``rows`` rows (column width for one, else text width).

    ``height`` is per row.
    """
    width = width or (COLUMN_WIDTH if panels == 1 else TEXT_WIDTH)
    fig = Figure(figsize=(width, height * rows), layout="constrained")
    fig.subplots(rows, math.ceil(panels / rows), squeeze=False)
    return fig


def variant_lines(
    ax: Axes, df: Any, variants: Sequence[str], errorbar: Any = ("pi", 100), **line: Any
) -> None:
    """One line per variant (columns x, value, variant), band over seeds, no legend.

    ``line``: further matplotlib line properties (``linestyle``, ``alpha``, ...).
    """
    sns.lineplot(
        data=df,
        x="x",
        y="value",
        hue="variant",
        hue_order=list(variants),
        palette=palette(variants),
        errorbar=errorbar,
        legend=False,
        ax=ax,
        **line,
    )


def seed_bands(
    ax: Axes, bands: Any, variants: Sequence[str], band: bool = True, **line: Any
) -> None:
    """One line per variant (the mean over seeds) and its shaded 95% interval, no legend.

    ``bands``: a :func:`~siamlab.plots.frames.band_frame`. The shade is drawn where a
    point has two or more seeds; a variant of one seed is a plain line. ``band=False``:
    the lines alone. ``line``: further matplotlib line properties (``linestyle``, ...).
    """
    colours = palette(variants)
    for variant in variants:
        rows = bands[bands["variant"] == variant]
        if rows.empty:
            continue
        x, lo, hi = (rows[k].to_numpy(dtype=float) for k in ("x", "lo", "hi"))
        ax.plot(x, rows["mean"].to_numpy(dtype=float), color=colours[variant], **line)
        shown = np.isfinite(lo) & np.isfinite(hi)
        if band and shown.any():
            ax.fill_between(x, lo, hi, where=shown, color=colours[variant], alpha=0.2, lw=0)


def palette(variants: Sequence[str]) -> dict[str, Color]:
    """One colour per variant, in order, from seaborn's colour-blind-safe palette."""
    colours = sns.color_palette("colorblind", max(len(variants), 1))
    return dict(zip(variants, colours, strict=False))


def save_figure(fig: Figure, path: str | Path, dpi: int = 300) -> Path:
    """Write ``fig`` as PNG (``dpi``) or PDF/SVG (vector), creating the folder.

    Raises:
        ValueError: for a suffix matplotlib cannot write.
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in fig.canvas.get_supported_filetypes():
        raise ValueError(f"cannot write a .{suffix} figure: use .png, .pdf or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def reference_line(ax: Axes, value: float) -> Line2D:
    """A dashed grey horizontal line at ``value`` (named in the legend by :func:`add_legend`).

    On a linear axis the y range grows to keep the line clear of the top edge.
    """
    line = ax.axhline(value, color=REFERENCE_COLOR, linestyle="--", linewidth=0.9, zorder=1)
    if ax.get_yscale() == "linear":
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, max(top, bottom + 1.1 * (value - bottom)))
    return line


def log_axis(ax: Axes) -> None:
    """Log y scale, labelled however narrow the range; call after drawing.

    Labels sit at powers of ten, or at 1-2-5 steps (plain numbers) when the data span
    less than two decades, so every axis has labels.
    """
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    if math.log10(top / bottom) < 2:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def add_legend(
    fig: Figure,
    labels: dict[str, str],
    colours: dict[str, Color],
    reference: str | None = None,
    styles: Sequence[tuple[str, Any, float]] = (),
) -> None:
    """One legend for the whole figure, above the panels: one entry per variant.

    Args:
        fig: the figure.
        labels: variant -> its legend text.
        colours: variant -> its colour.
        reference: the dashed reference line's legend text, if the figure has one.
        styles: (text, linestyle, alpha) entries in black after the variants, for a
            figure whose line styles mean something (e.g. z solid, p dashed).
    """
    handles = [Line2D([], [], color=colours[v], label=text) for v, text in labels.items()]
    handles += [
        Line2D([], [], color="black", linestyle=style, alpha=alpha, label=text)
        for text, style, alpha in styles
    ]
    if reference:
        handles.append(
            Line2D([], [], color=REFERENCE_COLOR, linestyle="--", linewidth=0.9, label=reference)
        )
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=min(len(handles), 4),
        frameon=False,
        handlelength=1.8,
        columnspacing=1.2,
    )
