"""Representation spectra across variants (Jing et al. presentation), at one epoch.

    python analysis/spectra.py results/stopgrad [--epoch N] [--out figures/spectra.pdf]

Falls back to the sorted per-channel std of z when the results hold no spectra.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from siamlab.plots import plot_channel_std, plot_spectra, save_figure  # noqa: E402
from siamlab.plots.spectra import spectrum_variables  # noqa: E402
from siamlab.results.runinfo import load_studies, merge_studies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="study folder(s)")
    parser.add_argument("--epoch", type=int, default=None, help="default: each run's last")
    parser.add_argument(
        "--out",
        type=Path,
        nargs="*",
        default=[Path("figures/spectra.pdf"), Path("figures/spectra.png")],
    )
    args = parser.parse_args()
    ds = merge_studies(load_studies(args.results))
    if spectrum_variables(ds):
        fig = plot_spectra(ds, epoch=args.epoch)
    else:
        print("note: no spectra recorded in these results; plotting the per-channel std of z")
        fig = plot_channel_std(ds, epoch=args.epoch)
    for out in args.out:
        print("wrote", save_figure(fig, out))


if __name__ == "__main__":
    main()
