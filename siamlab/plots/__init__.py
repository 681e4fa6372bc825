"""Paper-style figures from study Datasets (:func:`siamlab.results.store.open_study`).

Every function takes a Dataset and returns a matplotlib Figure; :func:`plot` picks
one by kind and :func:`~siamlab.plots.style.save_figure` writes it::

    from siamlab.plots import plot, save_figure
    fig = plot(open_study("results/stopgrad"), "curves")
    save_figure(fig, "fig2.pdf")
"""

from collections.abc import Callable

import xarray as xr
from matplotlib.figure import Figure

from siamlab.errors import ResultsError
from siamlab.plots.centred import plot_centred
from siamlab.plots.channels import plot_channel_std
from siamlab.plots.curves import plot_curves, plot_eta, plot_knn, plot_std
from siamlab.plots.spectra import plot_spectra
from siamlab.plots.stages import plot_stages
from siamlab.plots.style import save_figure

KINDS: dict[str, Callable[..., Figure]] = {
    "curves": plot_curves,
    "std": plot_std,
    "spectra": plot_spectra,
    "knn": plot_knn,
    "eta": plot_eta,
    "channel_std": plot_channel_std,
    "centred": plot_centred,
    "stages": plot_stages,
}
EPOCH_KINDS = frozenset({"spectra", "channel_std", "stages"})


def plot(ds: xr.Dataset, kind: str, epoch: int | None = None) -> Figure:
    """The figure of ``kind`` (see :data:`KINDS`); ``epoch`` for :data:`EPOCH_KINDS`.

    Raises:
        ResultsError: unknown kind, or the results lack what the kind needs.
    """
    if kind not in KINDS:
        raise ResultsError(f"unknown plot kind {kind!r}; kinds: {', '.join(KINDS)}")
    if kind in EPOCH_KINDS:
        return KINDS[kind](ds, epoch=epoch)
    if epoch is not None:
        raise ResultsError(f"--epoch applies to {', '.join(sorted(EPOCH_KINDS))}, not {kind}")
    return KINDS[kind](ds)


__all__ = [
    "KINDS",
    "plot",
    "plot_centred",
    "plot_channel_std",
    "plot_curves",
    "plot_eta",
    "plot_knn",
    "plot_spectra",
    "plot_stages",
    "plot_std",
    "save_figure",
]
