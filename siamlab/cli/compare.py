"""``siamlab compare``: the variants of one or several studies side by side."""

import re
import textwrap
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape
from rich.table import Table

from siamlab.cli.app import app, console, err, fail
from siamlab.cli.tables import GAP, fitted_table, least_width
from siamlab.errors import SiamlabError

if TYPE_CHECKING:  # xarray: loaded when the command runs
    from siamlab.results.compare import CompareTable, Format, Reduce

VERDICT_STYLE = {
    "healthy": "green",
    "collapsed": "bold red",
    "dimensional_collapse": "red",
    "partial_collapse": "red",
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
PAPER_ROOM = 30  # the paper's notes beside the table only with this many characters
_INTERVAL = re.compile(r"\[([^\]\s]+), ([^\]\s]+)\]")


def unbroken_intervals(cell: str) -> str:
    """``0.81 [0.78, 0.85]`` as ``0.81 [0.78,0.85]``: a narrow cell wraps before the bracket."""
    return _INTERVAL.sub(r"[\1,\2]", cell)


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


def _part(
    headers: list[str],
    texts: tuple[list[list[str]], list[list[str]]],
    picked: list[int],
    width: int,
    title: str,
    right: list[str],
) -> Table:
    """One table of the columns ``picked``: intervals unbroken if it fits, else spaced.

    ``texts``: (markup of the compact rows, markup of the spaced rows) over every column;
    the plain text is the markup's escaped text, measured for the widths.
    """
    heads = [headers[i] for i in picked]
    compact, spaced = ([[r[i] for i in picked] for r in rows] for rows in texts)
    free = [k for k, h in enumerate(heads) if h == "paper"]
    rows = compact if least_width(heads, _plain(compact), free) <= width else spaced
    return fitted_table(
        heads, _plain(rows), width, title=title, right=right, free=["paper"], markup=rows
    )


def _plain(markup: list[list[str]]) -> list[list[str]]:
    from rich.text import Text

    return [[Text.from_markup(c).plain for c in row] for row in markup]


def _paper_room(
    columns: list[str], rows: list[list[str]], width: int, elsewhere: Collection[str] = ()
) -> int:
    """The characters the paper's notes get beside the other columns at full width.

    ``elsewhere``: columns printed in a table of their own (the differences vs ``--vs``).
    """
    beside = [k for k, c in enumerate(columns) if c != "paper" and c not in elsewhere]
    full = [max(len(c) for c in (columns[k], *(r[k] for r in rows))) for k in beside]
    return width - sum(full) - GAP * (len(beside) + 1)


def _rich(table: "CompareTable", width: int) -> tuple[list[Table], list[str]]:
    """The rich table(s); the paper's notes go below where they would wrap under 30 characters.

    Names, statuses, verdicts and numbers are never cut inside a word
    (:func:`~siamlab.cli.tables.fitted_table`); an interval stays on one line
    (``[lo,hi]``) where the table fits, else it may wrap after its comma. Narrow
    terminals get shorter headers, and where the verdict, onset and agrees columns do
    not fit beside the metrics they form a second table below. The differences vs
    ``--vs`` form a table of their own, titled with what they are.
    """
    columns, rows = table.columns(), table.text_rows()
    below = []
    notes = [r[columns.index("paper")] for r in rows] if "paper" in columns else []
    room = _paper_room(columns, rows, width, table.difference_columns()) if notes else 0
    if notes and room < min(PAPER_ROOM, max(map(len, notes))):
        i, v = columns.index("paper"), columns.index("variant")
        below = list(dict.fromkeys(f"{r[v]}: {r[i]}" for r in rows if r[i]))  # once each
        columns, rows = columns[:i], [r[:i] for r in rows]
    headers = [NARROW.get(c, c) if width < 100 else c for c in columns]
    numeric = set(columns[columns.index("status") + 1 :]) - {*VERDICT_COLUMNS, "paper"}
    right = [h for h, c in zip(headers, columns, strict=True) if c in numeric | {"seeds"}]
    compact = [
        [unbroken_intervals(x) if c in numeric else x for c, x in zip(columns, r, strict=True)]
        for r in rows
    ]
    texts = ([_markup(columns, r) for r in compact], [_markup(columns, r) for r in rows])
    title, *vs_title = table.captions()
    deltas = [i for i, c in enumerate(columns) if c in table.difference_columns()]
    keys = [i for i, c in enumerate(columns) if c in ("study", "variant")]
    main = [i for i in range(len(columns)) if i not in deltas]
    free = [k for k, i in enumerate(main) if columns[i] == "paper"]
    fits = least_width([headers[i] for i in main], [[r[i] for i in main] for r in compact], free)
    if fits <= width or not table.has_verdict:
        parts = [(title, main)]
    else:
        verdicts = [i for i, c in enumerate(columns) if c in VERDICT_COLUMNS]
        rest = [i for i in main if i not in verdicts]
        parts = [(title, rest), ("run verdict over seeds", keys + verdicts)]
    parts += [(vs_title[0], keys + deltas)] if deltas else []
    return [_part(headers, texts, picked, width, name, right) for name, picked in parts], below


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
    vs: Annotated[
        str | None,
        typer.Option(
            "--vs",
            metavar="VARIANT",
            help="Add each metric's difference from VARIANT with its 95% interval (Welch).",
        ),
    ] = None,
) -> None:
    """Print every variant's metrics (mean [95% interval] over seeds), verdict and the paper's.

    The interval is Student t for 2-4 seeds and bootstrap-t from 5 (the header says
    which); one seed shows its value alone. ``--vs VARIANT``: per metric the difference
    of each variant's mean from VARIANT's, its 95% Welch interval, ``*`` when it
    excludes 0. Per variant: the run verdict over seeds (``collapsed 2/3, healthy
    1/3``; ``?`` = provisional), its onset epoch, and whether it agrees with the paper's
    outcome (yes, no, k/n seeds, - without one). Each run's evidence is printed below.
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
        table = compare(studies, metric, reduce_of(reduce), paper, sort, vs)
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
        print_notes(sources + table.notes)
    else:
        print_notes(sources)
        typer.echo(table.format(format_of(fmt)), nl=False)


def reduce_of(text: str) -> "Reduce":
    """Narrow a checked option string to the Reduce literal."""
    return cast("Reduce", text)


def format_of(text: str) -> "Format":
    """Narrow a checked option string to the Format literal."""
    return cast("Format", text)
