"""``siamlab plot``: paper-style figures of a study's results."""

from pathlib import Path
from typing import Annotated

import typer

from siamlab.cli.app import app, console, fail
from siamlab.cli.compare import print_notes
from siamlab.errors import SiamlabError

KIND_HELP = (
    "curves (Fig. 2: loss, std, kNN), std, spectra, knn, eta, channel_std, centred "
    "(centre and residual of z/|z|, p and h) or stages (rank and spectrum of each "
    "backbone stage)."
)


@app.command("plot")
def plot_cmd(
    results: Annotated[
        list[Path], typer.Argument(help="Study folder(s) (results/<study>) or a results root.")
    ],
    kind: Annotated[str, typer.Option("--kind", "-k", help=KIND_HELP)] = "curves",
    epoch: Annotated[
        int | None, typer.Option(help="Epoch for spectra, channel_std and stages (default: last).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output .png, .pdf or .svg, or a folder (default: <results>/figures/).",
        ),
    ] = None,
) -> None:
    """Draw one figure (one colour per variant, bands over seeds) and write it to a file."""
    import matplotlib

    from siamlab.results.run_notes import run_notes
    from siamlab.results.runinfo import load_studies, merge_studies

    matplotlib.use("Agg")
    from siamlab.plots import KINDS, plot, save_figure  # after the backend is chosen

    if kind not in KINDS:
        raise fail(SiamlabError(f"unknown --kind {kind!r}; kinds: {', '.join(KINDS)}"))
    try:
        studies = load_studies(results)
        ds = merge_studies(studies)
        fig = plot(ds, kind, epoch)
    except SiamlabError as exc:
        raise fail(exc) from None
    name = "+".join(studies)
    path = out or Path(results[0]) / "figures" / f"{kind}.png"
    if out is not None and (out.is_dir() or not out.suffix):  # a folder: the figure inside
        path = out / f"{kind}.png"
    if out is None and len(studies) > 1:
        path = Path(results[0]) / "figures" / f"{name.replace('/', '_')}_{kind}.png"
    try:
        save_figure(fig, path)
    except (ValueError, OSError) as exc:
        raise fail(SiamlabError(f"cannot write {path}: {exc}; pass --out FILE")) from None
    print_notes(run_notes(ds))
    console.print(f"wrote {path}", highlight=False)
