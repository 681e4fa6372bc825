"""The typer application and consoles shared by every ``siamlab`` command module."""

import typer
from rich.console import Console
from rich.markup import escape

from siamlab.errors import SiamlabError

app = typer.Typer(
    help="siamlab: study collapse in Siamese self-supervised learning (SimSiam and ablations).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def fail(exc: SiamlabError) -> typer.Exit:
    """Print a user-fixable error without a traceback; the caller raises the returned Exit (2)."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # keeps [slurm]
    return typer.Exit(2)
