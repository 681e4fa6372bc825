"""Terminal tables whose names, statuses and numbers are never cut inside a word.

rich shrinks every wrappable column of a table too wide for the terminal, and then
folds cell text mid-word ("stop_gr / ad", "finishe / d"). Here each column gets an
explicit width: at least its longest word (header included), then, while the
terminal has room, up to its full text. Cells wrap at spaces only (``a ±`` /
``b``); only the free-text columns (the paper's notes, log paths) may fold.
"""

from collections.abc import Collection, Sequence

from rich import box
from rich.markup import escape
from rich.table import Table

GAP = 2  # per column: its blank rule and collapsed padding (SIMPLE_HEAD box)


def _least(columns: Sequence[Sequence[str]], free: Collection[int]) -> list[int]:
    """Per column: its longest word (8 for a free-text column, which folds)."""
    return [
        8 if i in free else max(len(w) for text in col for w in (text.split() or [""]))
        for i, col in enumerate(columns)
    ]


def _columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    return list(zip(headers, *rows, strict=True)) if rows else [(h,) for h in headers]


def least_width(
    headers: Sequence[str], rows: Sequence[Sequence[str]], free: Collection[int] = ()
) -> int:
    """The narrowest terminal in which no cell of the table is cut inside a word."""
    least = _least(_columns(headers, rows), free)
    return sum(least) + GAP * len(least)


def fit_widths(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, free: Collection[int] = ()
) -> list[int]:
    """Column widths that fit ``width`` where possible, never below a column's longest word.

    Args:
        headers: column titles (they wrap at spaces too).
        rows: the cells as plain text.
        width: the terminal's width.
        free: indices of free-text columns, which may be as narrow as 8 (they fold).
    """
    columns = _columns(headers, rows)
    least = _least(columns, free)
    full = [max(len(text) for text in col) for col in columns]
    widths = [
        min(a, b) if i in free else a for i, (a, b) in enumerate(zip(least, full, strict=True))
    ]
    spare = width - GAP * len(columns) - sum(widths)
    for i in sorted(range(len(columns)), key=lambda i: (i in free, full[i] - widths[i])):
        grow = max(0, min(full[i] - widths[i], spare))
        widths[i] += grow
        spare -= grow
    return widths


def fitted_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    title: str = "",
    right: Collection[str] = (),
    free: Collection[str] = (),
    markup: Sequence[Sequence[str]] | None = None,
) -> Table:
    """A rich table laid out by :func:`fit_widths`.

    Args:
        headers: column titles.
        rows: plain-text cells (measured).
        width: the terminal's width.
        title: the table's title.
        right: right-aligned (numeric) columns.
        free: free-text columns, folded when narrow.
        markup: the cells as printed (rich markup, e.g. colours); default: ``rows`` escaped.
    """
    free_at = [i for i, h in enumerate(headers) if h in free]
    widths = fit_widths(headers, rows, width, free_at)
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for head, w in zip(headers, widths, strict=True):
        table.add_column(
            head, width=w, justify="right" if head in right else "left", overflow="fold"
        )
    for row in markup if markup is not None else [[escape(c) for c in r] for r in rows]:
        table.add_row(*row)
    return table
