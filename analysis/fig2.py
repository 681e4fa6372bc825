"""Fig. 2 of the paper from a study's results: training loss, output std, kNN accuracy.

    python analysis/fig2.py results/stopgrad [figures/fig2.pdf]

Writes the figure as given (default: figures/fig2.pdf and figures/fig2.png).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from siamlab.plots import plot_curves, save_figure  # noqa: E402
from siamlab.results.run_notes import run_notes  # noqa: E402
from siamlab.results.runinfo import load_studies, merge_studies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="+", type=Path, help="study folder(s), e.g. results/stopgrad"
    )
    parser.add_argument(
        "--out", type=Path, nargs="*", default=[Path("figures/fig2.pdf"), Path("figures/fig2.png")]
    )
    args = parser.parse_args()
    ds = merge_studies(load_studies(args.results))
    fig = plot_curves(ds)
    for note in run_notes(ds):
        print("note:", note)
    for out in args.out:
        print("wrote", save_figure(fig, out))


if __name__ == "__main__":
    main()
