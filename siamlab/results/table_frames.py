"""A compare table's numbers as frames: per variant, per run, per metric, and as xarray.

:func:`variant_frame` is the csv format (one row per variant, a column per metric and
statistic); :func:`intervals_frame` has one row per study, variant and metric, and
:func:`intervals_dataset` the same over (study, variant, metric), for analysis
scripts: the means, intervals and differences that the table prints.
"""

import math
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from siamlab.errors import ResultsError
from siamlab.results.intervals import LEVEL
from siamlab.results.seed_stats import difference_caption, interval_caption

if TYPE_CHECKING:  # compare imports this module
    from siamlab.results.compare import CompareTable, Row


def variant_frame(table: "CompareTable") -> pd.DataFrame:
    """One row per variant: study, variant, seeds, status, the metrics, the verdict.

    Per metric: ``<metric>`` (mean), ``<metric>_std``, ``<metric>_n``, the interval
    ``<metric>_lo``, ``<metric>_hi``, ``<metric>_method``; with ``table.vs``:
    ``<metric>_diff``, ``<metric>_diff_lo``, ``<metric>_diff_hi``,
    ``<metric>_diff_excludes_zero`` and a ``vs`` column. Then verdict,
    verdict_onset_first, verdict_onset_last, agrees, outcome and paper.
    """
    records = []
    for r in table.rows:
        rec: dict[str, object] = {"study": r.study, "variant": r.variant, "seeds": r.seeds}
        rec["status"] = r.status
        for m in table.metrics:
            c = r.cells[m]
            rec.update({m: c.mean, f"{m}_std": c.std, f"{m}_n": c.n})
            rec.update({f"{m}_lo": c.lo, f"{m}_hi": c.hi, f"{m}_method": c.method})
        rec.update(difference_record(table, r))
        first, last = r.seed_verdicts().onset_range()
        rec.update({"verdict": r.verdict, "verdict_onset_first": first})
        rec.update({"verdict_onset_last": last, "agrees": r.agrees, "outcome": r.outcome})
        rec.update({"paper": r.paper})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def runs_frame(table: "CompareTable") -> pd.DataFrame:
    """One row per run: study, variant, seed, verdict, onset_epoch, provisional, evidence."""
    records: list[dict[str, Any]] = [
        {"study": r.study, "variant": r.variant, "seed": seed, **vars(v)}
        for r in table.rows
        for seed, v in r.runs.items()
    ]
    columns = ["study", "variant", "seed", "verdict", "onset_epoch", "evidence", "provisional"]
    return pd.DataFrame.from_records(records, columns=columns)


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
