"""Compare the variants of one or several studies: final/best metrics over seeds, verdicts.

Per variant: each metric's mean over seeds with its 95% interval and optionally its
difference from one named variant (``vs``; :mod:`siamlab.results.intervals`), the run
verdict over seeds (:class:`~siamlab.results.verdicts.SeedVerdicts`: ``collapsed``, or
``collapsed 2/3, healthy 1/3``), its onset epoch, and whether it agrees with the paper.

Everything takes the Dataset of :func:`siamlab.results.store.open_study` (dims
``variant``, ``seed``, ``step``, ``epoch``, ...; per-run ``status`` and ``config``), so
it works the same from the CLI and from a notebook::

    table = compare({"stopgrad": open_study("results/stopgrad")}, vs="stop_grad")
    table.to_frame()                     # a pandas DataFrame, one row per variant
    table.to_dataset()                   # xarray: mean, lo, hi, n, method, diff, ...
    print(table.format("markdown"))
"""

import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from siamlab.diagnostics.verdict_rule import RunVerdict
from siamlab.errors import ResultsError
from siamlab.results.intervals import Difference
from siamlab.results.paper import normalise, paper_text
from siamlab.results.reduce import (
    SQRT_D,
    Cell,
    Reduce,
    lower_is_better,
    reduce_runs,
    std_references,
)
from siamlab.results.run_notes import config_conflicts, run_notes
from siamlab.results.runinfo import (
    FINISHED,
    as_study,
    check_metrics,
    load_studies,
    run_exists,
    scalar_metrics,
    std_reference,
)
from siamlab.results.seed_stats import (
    add_differences,
    difference_caption,
    difference_cells,
    interval_caption,
)
from siamlab.results.table_frames import (
    intervals_dataset,
    intervals_frame,
    runs_frame,
    variant_frame,
)
from siamlab.results.text_table import render
from siamlab.results.verdicts import PROVISIONAL, SeedVerdicts, run_verdicts

Format = Literal["table", "csv", "markdown", "latex"]

DEFAULT_METRICS = ("epoch_loss", "z_std_eval*sqrt(d)", "knn_top1", "z_rankme", "eval_linear_top1")
PERCENT = frozenset({"knn_top1", "eval_linear_top1", "eval_knn_top1"})  # shown as %
HEADERS = {
    "epoch_loss": "loss",
    "loss": "step loss",
    "z_std_eval": "std z/‖z‖ eval",
    "z_std_eval*sqrt(d)": "std z/‖z‖·√d",
    "z_std_train": "std z/‖z‖ train",
    "knn_top1": "kNN top-1 (%)",
    "z_rankme": "RankMe z",
    "z_erank": "eff. rank z",
    "h_alpha": "α-ReQ h",
    "eval_linear_top1": "linear top-1 (%)",
    "eval_knn_top1": "kNN eval top-1 (%)",
    "images_per_second": "img/s",
}


@dataclass
class Row:
    """One variant of one study.

    Attributes:
        cells: metric -> its mean and interval over seeds; values: metric -> the
            value of each seed (NaN: none); diffs: metric -> the difference from the
            ``vs`` variant (empty without one, and for that variant itself).
        runs: seed -> its run verdict (runs with results).
        verdict: the verdict over seeds (:meth:`SeedVerdicts.text`); onset: its onset.
        agrees: ``yes``/``no``/``k/n``/``-`` against the paper's ``outcome``.
    """

    study: str
    variant: str
    seeds: int
    status: str
    cells: dict[str, Cell]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    diffs: dict[str, Difference] = field(default_factory=dict)
    runs: dict[int, RunVerdict] = field(default_factory=dict)
    verdict: str = ""
    onset: str = "-"
    agrees: str = "-"
    outcome: str = ""
    paper: str = ""

    def seed_verdicts(self) -> SeedVerdicts:
        """The run verdicts of this variant's seeds."""
        return SeedVerdicts([v for v in self.runs.values() if v.verdict])


@dataclass
class CompareTable:
    """The comparison: rows, the metrics in column order, and notes to show with it.

    ``vs``: the variant whose mean each row's Δ columns subtract (None: no Δ columns).
    """

    rows: list[Row]
    metrics: list[str]
    reduce: Reduce
    notes: list[str] = field(default_factory=list)
    has_verdict: bool = False
    vs: str | None = None

    def captions(self) -> list[str]:
        """What the numbers are: the interval over seeds (and the Δ columns' difference)."""
        head = [interval_caption(self)]
        return head + ([difference_caption(self.vs)] if self.vs is not None else [])

    def difference_columns(self) -> list[str]:
        """Headers of the Δ columns (one per metric; none without ``vs``)."""
        return [f"Δ {HEADERS.get(m, m)}" for m in self.metrics] if self.vs is not None else []

    def columns(self) -> list[str]:
        """Header of the text formats (short metric names, see :data:`HEADERS`)."""
        head = ["study"] if self.multi_study() else []
        head += ["variant", "seeds", "status", *(HEADERS.get(m, m) for m in self.metrics)]
        head += self.difference_columns()
        head += ["verdict", "onset"] if self.has_verdict else []
        head += ["agrees"] if self.has_verdict and self.has_outcome() else []
        return head + (["paper"] if self.has_paper() else [])

    def has_outcome(self) -> bool:
        """Whether any row has the paper's outcome (then an ``agrees`` column is shown)."""
        return any(r.outcome for r in self.rows)

    def multi_study(self) -> bool:
        """Whether rows come from more than one study (then a study column is shown)."""
        return len({r.study for r in self.rows}) > 1

    def has_paper(self) -> bool:
        """Whether any row has the paper's annotation."""
        return any(r.paper for r in self.rows)

    def text_rows(self) -> list[list[str]]:
        """Every row as formatted strings, in :meth:`columns` order."""
        out = []
        for r in self.rows:
            cells = [r.cells[m].text(100 if m in PERCENT else 1) for m in self.metrics]
            cells += difference_cells(self, r, PERCENT)
            verdict = [r.verdict or "-", r.onset] if self.has_verdict else []
            verdict += [r.agrees] if self.has_verdict and self.has_outcome() else []
            head = [r.study] if self.multi_study() else []
            paper = [r.paper] if self.has_paper() else []
            out.append([*head, r.variant, str(r.seeds), r.status, *cells, *verdict, *paper])
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per variant (:func:`~siamlab.results.table_frames.variant_frame`)."""
        return variant_frame(self)

    def intervals(self) -> pd.DataFrame:
        """One row per (study, variant, metric) (:func:`.table_frames.intervals_frame`)."""
        return intervals_frame(self)

    def to_dataset(self) -> xr.Dataset:
        """The same numbers over (study, variant, metric) (:func:`.intervals_dataset`)."""
        return intervals_dataset(self)

    def runs_frame(self) -> pd.DataFrame:
        """One row per run's verdict (:func:`~siamlab.results.table_frames.runs_frame`)."""
        return runs_frame(self)

    def evidence(self) -> list[str]:
        """``<variant>/seed<k>: <evidence>`` of every run with a verdict, in row order."""
        head = (lambda r: f"{r.study}/") if self.multi_study() else (lambda r: "")
        return [
            f"{head(r)}{r.variant}/seed{seed}: {v.verdict}{PROVISIONAL * v.provisional}, "
            f"{v.evidence or 'no evidence recorded'}"
            for r in self.rows
            for seed, v in r.runs.items()
            if v.verdict
        ]

    def format(self, fmt: Format) -> str:
        """The table as ``csv`` (raw numbers), ``markdown``, ``latex`` or plain ``table`` text."""
        if fmt == "csv":
            buf = io.StringIO()
            self.to_frame().to_csv(buf, index=False, lineterminator="\n")
            return buf.getvalue()
        return render(self.columns(), self.text_rows(), self.captions() + self.notes, fmt)


def compare(
    studies: Mapping[str, xr.Dataset] | xr.Dataset,
    metrics: Sequence[str] | None = None,
    reduce: Reduce = "final",
    paper: Mapping[str, Mapping[str, object]] | None = None,
    sort: str | None = None,
    vs: str | None = None,
) -> CompareTable:
    """Build the comparison table of every variant of ``studies``.

    Args:
        studies: study name -> Dataset (or one Dataset).
        metrics: scalar variables to show; default: those of :data:`DEFAULT_METRICS` present.
        reduce: ``final`` (last recorded value of each run) or ``best`` over training.
        paper: study name -> variant -> the paper's outcome (a string or a mapping as in
            a study file's ``paper:``; see :func:`siamlab.results.paper.paper_annotations`).
        sort: a shown metric to order the rows by, best first; default: the order of
            ``paper``'s variants (a study file's order), then the results' order.
        vs: a variant: add each metric's difference from its mean (same study) with
            Welch's 95% interval (:func:`~siamlab.results.seed_stats.add_differences`).

    Raises:
        ResultsError: a requested metric is missing (the message lists what exists),
            or no study has the variant ``vs``.
    """
    if isinstance(studies, xr.Dataset):
        studies = {str(studies.attrs.get("study", "study")): as_study(studies)}
    table = CompareTable([], [], reduce, vs=vs)
    for study, ds in studies.items():
        present = scalar_metrics(ds)
        names = list(metrics or [m for m in DEFAULT_METRICS if m.removesuffix(SQRT_D) in present])
        check_metrics(ds, [m.removesuffix(SQRT_D) for m in names])
        scaled = [m.removesuffix(SQRT_D) for m in names if m.endswith(SQRT_D)]
        if any(std_references(ds, m).isnull().all() for m in scaled):
            raise ResultsError(f"{study}: d is unknown (no std_reference attr or model.dim)")
        table.metrics += [m for m in names if m not in table.metrics]
        reduced = {m: reduce_runs(ds, m, reduce) for m in names}
        exists = run_exists(ds)
        verdicts = run_verdicts(ds)
        table.has_verdict |= any(v.verdict for v in verdicts.values())
        prefix = f"{study}: " if len(studies) > 1 else ""
        table.notes += [prefix + n for n in run_notes(ds)]
        ref = std_reference(ds)
        if ref and any("std" in m and not m.endswith(SQRT_D) and m[:2] != "h_" for m in names):
            d = round(1 / ref**2)
            table.notes.append(f"{prefix}std reference 1/sqrt(d) = {ref:.4g} (d = {d})")
        notes = (paper or {}).get(study, {})
        rank = {v: i for i, v in enumerate(notes)}  # a study file's variant order
        for variant in sorted(ds["variant"].values, key=lambda v: rank.get(str(v), len(rank))):
            ok = exists.sel(variant=variant).values
            values = {m: da.sel(variant=variant).values[ok] for m, da in reduced.items()}
            cells = {m: Cell.over_seeds(v) for m, v in values.items()}
            status = ds["status"].sel(variant=variant).values[ok]
            counts = Counter(str(s) for s in status)
            row = Row(study, str(variant), int(ok.sum()), _status_text(counts), cells, values)
            row.runs = {s: v for (name, s), v in verdicts.items() if name == str(variant)}
            note = normalise(notes.get(str(variant), ""))
            row.paper, row.outcome = paper_text(note), str(note.get("outcome", ""))
            seeds = row.seed_verdicts()
            row.verdict, row.onset = seeds.text(), seeds.onset_text()
            row.agrees = seeds.agrees(row.outcome)
            if 0 < (judged := len(seeds.runs)) < row.seeds:  # the verdict counts these only
                no = f"{row.seeds - judged} of {row.seeds} seeds have no verdict yet"
                table.notes.append(f"{prefix}{variant}: {no}; its verdict counts the others")
            table.rows.append(row)
    if any(v.provisional for r in table.rows for v in r.runs.values() if v.verdict):
        table.notes.append(f"{PROVISIONAL} = provisional: no state has held long enough yet")
    for r in table.rows:  # metrics another study lacks
        for m in table.metrics:
            r.cells.setdefault(m, Cell(math.nan, math.nan, 0))
            r.values.setdefault(m, np.array([]))
    if vs is not None:
        table.notes += add_differences(table.rows, table.metrics, vs)
    if sort is not None:
        if sort not in table.metrics:
            raise ResultsError(f"--sort {sort}: not a shown metric ({', '.join(table.metrics)})")
        sign = 1 if lower_is_better(sort) else -1
        table.rows.sort(key=lambda r: (math.isnan(r.cells[sort].mean), sign * r.cells[sort].mean))
    return table


def _status_text(counts: Counter[str]) -> str:
    if len(counts) == 1 and (only := next(iter(counts))) in FINISHED:
        return only
    total = sum(counts.values())
    return ", ".join(f"{n}/{total} {s}" for s, n in counts.items() if s != "finished")


__all__ = ["Cell", "CompareTable", "Reduce", "check_metrics", "compare", "config_conflicts"]
__all__ += ["load_studies", "reduce_runs", "scalar_metrics"]
