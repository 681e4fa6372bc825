"""``siamlab diagnose``: collapse diagnostics and verdict of any checkpoint, on any images.

CHECKPOINT is a siamlab run folder or ``last.pt``, a reference-implementation checkpoint,
a torchvision ResNet state dict, or a folder of one run's checkpoints (one per epoch).
Writes ``diagnostics.nc`` (the results schema) and figures, and prints a short report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from siamlab.cli.app import app, console, err, fail
from siamlab.errors import SiamlabError

DATA_HELP = (
    "The images: digits, cifar10, cifar100, a folder of your images (class subfolders or "
    "loose files), an ImageNet-layout folder (train/, val/) or an .npz data set. "
    "Default: a siamlab run's own data."
)


@app.command("diagnose")
def diagnose_cmd(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint file (siamlab, reference .pth.tar, torchvision .pth), run "
            "folder, or a folder of one run's checkpoints (epoch in the file or its name)."
        ),
    ],
    data: Annotated[str | None, typer.Option("--data", "-d", help=DATA_HELP)] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Side of the images fed to the network (data.image_size).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Base config of a checkpoint without one (cifar10 / imagenet by stem)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override the config, e.g. --set data.root=DIR."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder of diagnostics.nc and figures/."),
    ] = None,
    figures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
    progress: Annotated[bool, typer.Option(help="Progress bar over checkpoints.")] = True,
) -> None:
    """Measure std, centred geometry, spectra, ranks and kNN of a checkpoint; judge collapse."""
    from siamlab.diagnose.report import report_lines
    from siamlab.diagnose.runner import diagnose

    try:
        out = diagnose(
            checkpoint, data, profile, set_, device, output, image_size, figures, progress
        )
    except SiamlabError as exc:
        raise fail(exc) from None
    for line in report_lines(out.dataset, out.run_verdict):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for note in out.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote {out.path}", highlight=False, soft_wrap=True)
    if out.figures:
        shown = ", ".join(p.name for p in out.figures)
        console.print(
            f"figures in {out.figures[0].parent}: {shown}", highlight=False, soft_wrap=True
        )
