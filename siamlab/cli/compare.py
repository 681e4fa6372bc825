"""``siamlab compare``: the variants of one or several studies side by side."""

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape
from rich.table import Table

from siamlab.cli.app import app, console, err, fail
from siamlab.cli.tables import fitted_table, least_width
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
AGREES_STYLE = {"yes": "green", "no": "bold red"}


def styled_verdicts(text: str) -> str:
    """``collapsed 2/3, healthy 1/3`` with each verdict in its colour (rich markup)."""
    parts = []
    for part in text.split(", "):
        style = VERDICT_STYLE.get(part.split(" ")[0].rstrip("?"))
        parts.append(f"[{style}]{escape(part)}[/]" if style else escape(part))
    return ", ".join(parts)


def evidence_lines(lines: list[str], width: int) -> list[str]:
    """Each run's evidence, wrapped to ``width``, continuation lines indented."""
    return [
        textwrap.fill(line, width=max(width, 40), subsequent_indent="    ", break_on_hyphens=False)
        for line in lines
    ]


def print_notes(notes: list[str]) -> None:
    """Warnings on stderr, one per line."""
    for note in notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)


NARROW = {"std z/‖z‖·√d": "std·√d", "kNN top-1 (%)": "kNN %", "seeds": "n"}  # under 100 cols


VERDICT_COLUMNS = ("verdict", "onset", "agrees")


def _markup(columns: list[str], row: list[str]) -> list[str]:
    """The cells of one row as rich markup: verdicts, agreement and unfinished runs coloured."""
    from siamlab.results.runinfo import FINISHED

    cells = [escape(c) for c in row]
    for i, column in enumerate(columns):
        if column == "verdict":
            cells[i] = styled_verdicts(row[i])
        elif column == "agrees" and (style := AGREES_STYLE.get(row[i].rstrip("?"))):
            cells[i] = f"[{style}]{cells[i]}[/]"
        elif column == "status" and row[i] not in FINISHED:
            cells[i] = f"[yellow]{cells[i]}[/]"
    return cells


def _rich(table: "CompareTable", width: int) -> tuple[list[Table], list[str]]:
    """The rich table(s); in a terminal narrower than 120 the paper's notes go below.

    Names, statuses, verdicts and numbers are never cut inside a word
    (:func:`~siamlab.cli.tables.fitted_table`); narrow terminals get shorter headers,
    and where the verdict, onset and agrees columns do not fit beside the metrics they
    form a second table below.
    """
    columns, rows = table.columns(), table.text_rows()
    below = []
    if "paper" in columns and width < 120:
        i = columns.index("paper")
        below = [f"{r[columns.index('variant')]}: {r[i]}" for r in rows if r[i]]
        columns, rows = columns[:i], [r[:i] for r in rows]
    headers = [NARROW.get(c, c) if width < 100 else c for c in columns]
    numeric = set(columns[columns.index("status") + 1 :]) - {*VERDICT_COLUMNS, "paper"}
    right = [h for h, c in zip(headers, columns, strict=True) if c in numeric | {"seeds"}]
    markup = [_markup(columns, row) for row in rows]
    title = f"{table.reduce} value per run, mean ± std over seeds"
    free = [i for i, c in enumerate(columns) if c == "paper"]
    if least_width(headers, rows, free) <= width or not table.has_verdict:
        parts = [(title, list(range(len(columns))))]
    else:
        verdicts = [i for i, c in enumerate(columns) if c in VERDICT_COLUMNS]
        keys = [i for i, c in enumerate(columns) if c in ("study", "variant")]
        rest = [i for i in range(len(columns)) if i not in verdicts]
        parts = [(title, rest), ("run verdict over seeds", keys + verdicts)]
    out = []
    for name, picked in parts:
        out.append(
            fitted_table(
                [headers[i] for i in picked],
                [[row[i] for i in picked] for row in rows],
                width,
                title=name,
                right=right,
                free=["paper"],
                markup=[[cells[i] for i in picked] for cells in markup],
            )
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
    """Print every variant's metrics (mean ± std over seeds), verdict and the paper's number.

    Per variant: the run verdict over seeds (``collapsed 2/3, healthy 1/3``; ``?`` =
    provisional), its onset epoch, and whether it agrees with the paper's outcome (yes,
    no, k/n seeds, - without one). Each run's evidence is printed below the table.
    """
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
        rich_tables, below = _rich(table, console.width)
        for rich_table in rich_tables:
            console.print(rich_table)
        for line in below:
            console.print(f"paper, {escape(line)}", highlight=False)
        for line in evidence_lines(table.evidence(), console.width):
            console.print(escape(line), highlight=False, soft_wrap=True)
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
