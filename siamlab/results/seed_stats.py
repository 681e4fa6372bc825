"""The seed statistics of a compare table: its captions and the differences vs a variant.

A row's metric cell holds the mean over seeds and its 95% interval
(:mod:`siamlab.results.intervals`: Student t for 2-4 seeds, bootstrap-t from 5).
``compare(..., vs="stop_grad")`` adds, per metric, the difference of each variant's
mean from stop_grad's in the same study, with Welch's unpaired 95% interval, and
whether it excludes 0 (docs/seed-statistics.md). The numbers as frames:
:mod:`siamlab.results.table_frames`.
"""

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from siamlab.errors import ResultsError
from siamlab.results.intervals import LEVEL, WELCH, Interval, difference_interval, methods_text
from siamlab.results.reduce import EXCLUDES_ZERO, difference_text

if TYPE_CHECKING:  # compare imports this module
    from siamlab.results.compare import CompareTable, Row

REFERENCE = "ref"  # the Δ cell of the variant compared against


def interval_caption(table: "CompareTable") -> str:
    """``final value of each run; mean [95% interval] over seeds (Student t, n=3)``."""
    cells = [
        Interval(c.mean, c.lo, c.hi, c.n, c.method) for r in table.rows for c in r.cells.values()
    ]
    methods = methods_text(cells)
    return f"{table.reduce} value of each run; mean [{LEVEL:.0%} interval] over seeds ({methods})"


def difference_caption(vs: str) -> str:
    """What the Δ columns hold."""
    level = f"{LEVEL:.0%}"
    return (
        f"Δ = mean − mean of {vs} [{level} interval, {WELCH}, unpaired]; {EXCLUDES_ZERO} excludes 0"
    )


def add_differences(rows: Sequence["Row"], metrics: Sequence[str], vs: str) -> list[str]:
    """Fill each row's ``diffs`` (metric -> Difference) against ``vs`` of its own study.

    Returns:
        Notes for studies without a variant ``vs`` (their rows get no differences).

    Raises:
        ResultsError: no study has a variant ``vs`` (the message lists the variants).
    """
    refs = {r.study: r for r in rows if r.variant == vs}
    if not refs:
        names = ", ".join(sorted({r.variant for r in rows}))
        raise ResultsError(f"--vs {vs}: no such variant; variants: {names}")
    notes = []
    for study in dict.fromkeys(r.study for r in rows):
        if study not in refs:
            notes.append(f"{study}: no variant {vs}, so no differences")
    for r in rows:
        ref = refs.get(r.study)
        if ref is None or ref is r:
            continue
        r.diffs = {m: difference_interval(r.values[m], ref.values[m]) for m in metrics}
    return notes


def difference_cells(table: "CompareTable", row: "Row", percent: Collection[str]) -> list[str]:
    """The Δ cells of ``row`` (:func:`difference_text`; ``ref`` for the ``vs`` variant)."""
    if table.vs is None:
        return []
    return [
        difference_text(row.diffs[m], 100 if m in percent else 1)
        if m in row.diffs
        else REFERENCE
        if row.variant == table.vs
        else "-"
        for m in table.metrics
    ]
