"""The typer application and consoles shared by every ``siamlab`` command module."""

import inspect
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import typer
from rich.console import Console
from rich.markup import escape

import siamlab
from siamlab.errors import SiamlabError

PACKAGE = Path(siamlab.__file__).resolve().parent

app = typer.Typer(
    help="siamlab: study collapse in Siamese self-supervised learning (SimSiam and ablations).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _width(stream: object) -> int | None:
    """A terminal's own width (None: rich asks it); 132 columns into a file or pipe.

    Rich lays tables out for 80 columns when the output is not a terminal, which wraps
    the run summary's and the bench's numbers mid-value in logs (``> run.log``, CI);
    ``COLUMNS`` overrides.
    """
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    isatty = getattr(stream, "isatty", None)
    return None if callable(isatty) and isatty() else 132


console = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))


ShowWarning = Callable[..., None]  # the signature of ``warnings.showwarning``


def one_line_warnings(fallback: ShowWarning) -> ShowWarning:
    """``warnings.showwarning`` printing siamlab's warnings as ``warning: <message>``.

    Python's format names the file and line that warned and repeats its source line,
    which tells a user of the command line nothing (siamlab's messages say what happened
    and what to do). Warnings of torch, xarray, ... go to ``fallback`` unchanged: there
    the place is the context.
    """

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if Path(filename).resolve().is_relative_to(PACKAGE):
            err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)
        else:
            fallback(message, category, filename, lineno, file, line)

    show.one_line = True  # type: ignore[attr-defined]
    return show


@app.callback()
def _command_line() -> None:
    """Before every command: siamlab's warnings as one line (:func:`one_line_warnings`)."""
    if not getattr(warnings.showwarning, "one_line", False):
        warnings.showwarning = one_line_warnings(warnings.showwarning)


def reflow_help(*apps: typer.Typer) -> None:
    """Give every command of ``apps`` its docstring with each paragraph on one line.

    Typer keeps the single line breaks of a help text's later paragraphs, so a docstring
    wrapped at 88 columns broke mid-sentence again on an 80-column terminal; joined, rich
    wraps each paragraph to the terminal's width. Paragraphs stay apart; the docstrings'
    double-backtick literal marks go (a terminal shows them as typed).
    """
    for group in apps:
        for info in group.registered_commands:
            doc = (info.help or inspect.getdoc(info.callback) or "").replace("``", "")
            paragraphs = (" ".join(p.split()) for p in doc.split("\n\n"))
            info.help = "\n\n".join(paragraphs)


def fail(exc: SiamlabError) -> typer.Exit:
    """Print a user-fixable error without a traceback; the caller raises the returned Exit (2)."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # keeps [slurm]
    return typer.Exit(2)
