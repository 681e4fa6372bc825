"""The seed statistics of a compare table: captions, differences vs a variant, frames.

A row's metric cell holds the mean over seeds and its 95% interval
(:mod:`siamlab.results.intervals`: Student t for 2-4 seeds, bootstrap-t from 5).
``compare(..., vs="stop_grad")`` adds, per metric, the difference of each variant's
mean from stop_grad's in the same study, with Welch's unpaired 95% interval, and
whether it excludes 0 (docs/seed-statistics.md).

The numbers are the table's, for analysis scripts: :func:`intervals_frame` (one row per
study, variant and metric) and :func:`intervals_dataset` (an xarray Dataset over
study, variant and metric).
"""

import math
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import xarray as xr

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


def difference_record(table: "CompareTable", row: "Row") -> dict[str, object]:
    """``vs`` and per metric ``<m>_diff``, ``_diff_lo``, ``_diff_hi``, ``_diff_excludes_zero``."""
    if table.vs is None:
        return {}
    rec: dict[str, object] = {"vs": table.vs}
    for m in table.metrics:
        d = row.diffs.get(m)
        rec[f"{m}_diff"] = d.diff if d else math.nan
        rec[f"{m}_diff_lo"] = d.lo if d else math.nan
        rec[f"{m}_diff_hi"] = d.hi if d else math.nan
        rec[f"{m}_diff_excludes_zero"] = d.excludes_zero if d else False
    return rec


def intervals_frame(table: "CompareTable") -> pd.DataFrame:
    """One row per (study, variant, metric): mean, std, lo, hi, n, method.

    With ``table.vs`` also the difference from it: diff, diff_lo, diff_hi,
    diff_excludes_zero and n_ref (the seeds of ``vs``).
    """
    records = []
    for r in table.rows:
        for m in table.metrics:
            c = r.cells[m]
            rec: dict[str, object] = {"study": r.study, "variant": r.variant, "metric": m}
            rec |= {"mean": c.mean, "std": c.std, "lo": c.lo, "hi": c.hi, "n": c.n}
            rec["method"] = c.method
            if table.vs is not None:
                d = r.diffs.get(m)
                rec |= {
                    "diff": d.diff if d else math.nan,
                    "diff_lo": d.lo if d else math.nan,
                    "diff_hi": d.hi if d else math.nan,
                    "diff_excludes_zero": d.excludes_zero if d else False,
                    "n_ref": d.n_ref if d else 0,
                }
            records.append(rec)
    return pd.DataFrame.from_records(records)


def intervals_dataset(table: "CompareTable") -> xr.Dataset:
    """:func:`intervals_frame` as a Dataset over (study, variant, metric).

    NaN where a study lacks a variant or metric; attrs: level, reduce, caption (and
    vs, vs_caption).
    """
    frame = intervals_frame(table)
    if frame.empty:
        raise ResultsError("no rows to compare")
    ds = frame.set_index(["study", "variant", "metric"]).to_xarray()
    order = {key: list(dict.fromkeys(frame[key])) for key in ("study", "variant", "metric")}
    ds = ds.reindex(order)  # the table's order, not sorted
    ds.attrs = {"level": LEVEL, "reduce": table.reduce, "caption": interval_caption(table)}
    if table.vs is not None:
        ds.attrs |= {"vs": table.vs, "vs_caption": difference_caption(table.vs)}
    return ds
