"""The figures of a diagnosis, drawn by :mod:`siamlab.plots` from ``diagnostics.nc``.

At the last epoch: the spectra of the measured outputs and the per-channel std of z. Over
the epochs of a folder (two or more checkpoints): the centred geometry, the eval-mode std
and the kNN accuracy. A figure whose variables were not measured (z of a backbone-only
checkpoint, kNN without labels) is left out and said so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import xarray as xr
from matplotlib.figure import Figure

from siamlab.errors import ResultsError

FIGURES_DIR = "figures"
NEEDS = {  # figure -> (variable it needs, why it may be missing)
    "channel_std": ("z_std_eval", "z was not measured (the checkpoint has no projector)"),
    "centred": ("z_residual_norm", "z was not measured (the checkpoint has no projector)"),
    "std": ("z_std_eval", "z was not measured (the checkpoint has no projector)"),
    "knn": ("knn_top1", "the images have no labels"),
}


def _kinds(ds: xr.Dataset) -> dict[str, Callable[[xr.Dataset], Figure]]:
    from siamlab.plots import plot_centred, plot_channel_std, plot_knn, plot_spectra, plot_std

    kinds: dict[str, Callable[[xr.Dataset], Figure]] = {
        "spectra": plot_spectra,
        "channel_std": plot_channel_std,
    }
    if ds.sizes.get("epoch", 0) >= 2:
        kinds |= {"centred": plot_centred, "std": plot_std, "knn": plot_knn}
    return kinds


def write_figures(ds: xr.Dataset, folder: str | Path) -> tuple[list[Path], list[str]]:
    """Draw every figure ``ds`` has the variables for into ``folder/figures/<kind>.png``.

    Returns:
        The files written and, for each figure left out, why.
    """
    from siamlab.plots import save_figure  # Figure objects: no pyplot, no backend needed

    written, skipped = [], []
    for kind, draw in _kinds(ds).items():
        name, why = NEEDS.get(kind, ("", ""))
        if name and name not in ds.data_vars:
            skipped.append(f"{kind}: {why}")
            continue
        try:
            fig = draw(ds)
        except ResultsError as exc:
            skipped.append(f"{kind}: {exc}")
            continue
        written.append(save_figure(fig, Path(folder) / FIGURES_DIR / f"{kind}.png", dpi=150))
    return written, skipped
