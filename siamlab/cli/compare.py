"""``siamlab compare``: the variants of one or several studies side by side."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape
from rich.table import Table

from siamlab.cli.app import app, console, err, fail
from siamlab.cli.tables import fitted_table
from siamlab.errors import SiamlabError

if TYPE_CHECKING:  # xarray: loaded when the command runs
    from siamlab.results.compare import CompareTable, Format, Reduce

VERDICT_STYLE = {
    "healthy": "green",
    "collapsed": "bold red",
    "dimensional_collapse": "red",
    "unstable": "yellow",
    "not_converging": "yellow",
}


def print_notes(notes: list[str]) -> None:
    """Warnings on stderr, one per line."""
    for note in notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)


NARROW = {"std z/‖z‖·√d": "std·√d", "kNN top-1 (%)": "kNN %", "seeds": "n"}  # under 100 cols


def _rich(table: "CompareTable", width: int) -> tuple[Table, list[str]]:
    """The rich table; in a terminal narrower than 120 the paper's notes go below it.

    Names, statuses, verdicts and numbers are never cut inside a word
    (:func:`~siamlab.cli.tables.fitted_table`); narrow terminals get shorter headers.
    """
    columns, rows = table.columns(), table.text_rows()
    below = []
    if "paper" in columns and width < 120:
        i = columns.index("paper")
        below = [f"{r[columns.index('variant')]}: {r[i]}" for r in rows if r[i]]
        columns, rows = columns[:i], [r[:i] for r in rows]
    numeric = set(columns[columns.index("status") + 1 :]) - {"verdict", "paper"} | {"seeds"}
    status = columns.index("status")
    verdict = columns.index("verdict") if table.has_verdict else None
    markup = []
    for row in rows:
        cells = [escape(c) for c in row]
        if verdict is not None and (style := VERDICT_STYLE.get(row[verdict].split(" ")[0])):
            cells[verdict] = f"[{style}]{cells[verdict]}[/]"
        if row[status] != "finished":
            cells[status] = f"[yellow]{cells[status]}[/]"
        markup.append(cells)
    headers = [NARROW.get(c, c) if width < 100 else c for c in columns]
    out = fitted_table(
        headers,
        rows,
        width,
        title=f"{table.reduce} value per run, mean ± std over seeds",
        right=[h for h, c in zip(headers, columns, strict=True) if c in numeric],
        free=["paper"],
        markup=markup,
    )
    return out, below


@app.command("compare")
def compare_cmd(
    results: Annotated[
        list[Path], typer.Argument(help="Study folders (results/<study>) or a results root.")
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Metric to show (repeatable); default: the main ones."),
    ] = None,
    reduce: Annotated[
        str, typer.Option("--reduce", "-r", help="final (last value) or best over training.")
    ] = "final",
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table (terminal), csv, markdown or latex.")
    ] = "table",
    study: Annotated[
        list[Path] | None,
        typer.Option("--study", help="Study file whose paper: annotations to show (repeatable)."),
    ] = None,
    sort: Annotated[str | None, typer.Option(help="Order rows by this metric, best first.")] = None,
) -> None:
    """Print every variant's metrics (mean ± std over seeds), verdict and the paper's number."""
    from siamlab.results.compare import compare, load_studies
    from siamlab.results.paper import paper_annotations

    if reduce not in ("final", "best"):
        raise fail(SiamlabError(f"--reduce must be final or best, not {reduce!r}"))
    if fmt not in ("table", "csv", "markdown", "latex"):
        raise fail(SiamlabError(f"--format must be table, csv, markdown or latex, not {fmt!r}"))
    try:
        studies = load_studies(results)
        paper, sources = paper_annotations(studies, study or [])
        table = compare(studies, metric, reduce_of(reduce), paper, sort)
    except SiamlabError as exc:
        raise fail(exc) from None
    if fmt == "table":
        rich_table, below = _rich(table, console.width)
        console.print(rich_table)
        for line in below:
            console.print(f"paper, {escape(line)}", highlight=False)
        print_notes(sources + table.notes[1:])
    else:
        print_notes(sources)
        typer.echo(table.format(format_of(fmt)), nl=False)


def reduce_of(text: str) -> "Reduce":
    """Narrow a checked option string to the Reduce literal."""
    return cast("Reduce", text)


def format_of(text: str) -> "Format":
    """Narrow a checked option string to the Format literal."""
    return cast("Format", text)
