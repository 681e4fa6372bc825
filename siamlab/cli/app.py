"""The typer application and consoles shared by every ``siamlab`` command module."""

import typer
from rich.console import Console

app = typer.Typer(
    help="siamlab: study collapse in Siamese self-supervised learning (SimSiam and ablations).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)
