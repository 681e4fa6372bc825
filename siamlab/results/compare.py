"""Compare the variants of one or several studies: final/best metrics over seeds, verdicts.

Everything takes the Dataset of :func:`siamlab.results.store.open_study` (dims
``variant``, ``seed``, ``step``, ``epoch``, ...; per-run ``status`` and ``config``), so
it works the same from the CLI and from a notebook::

    table = compare({"stopgrad": open_study("results/stopgrad")})
    table.to_frame()                     # a pandas DataFrame
    print(table.format("markdown"))
"""

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from siamlab.errors import ResultsError
from siamlab.results.paper import normalise, paper_text
from siamlab.results.runinfo import (
    TIME_DIMS,
    as_study,
    check_metrics,
    config_conflicts,
    final_verdicts,
    load_studies,
    majority,
    run_exists,
    run_notes,
    run_std_references,
    scalar_metrics,
    std_reference,
)

Reduce = Literal["final", "best"]
Format = Literal["table", "csv", "markdown", "latex"]

SQRT_D = "*sqrt(d)"  # suffix: the variable times sqrt(d), e.g. z_std_eval*sqrt(d) (1 = spread)
DEFAULT_METRICS = ("epoch_loss", "z_std_eval*sqrt(d)", "knn_top1", "z_rankme", "eval_linear_top1")
LOWER_IS_BETTER = frozenset({"loss", "epoch_loss"})
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


def reduce_runs(ds: xr.Dataset, name: str, reduce: Reduce = "final") -> xr.DataArray:
    """One value per (variant, seed): the last recorded value, or the best over training.

    ``best`` is the minimum for losses and the maximum otherwise. NaN where a run has
    no value (missing run, metric not recorded yet). ``<name>*sqrt(d)`` is ``name``
    divided by each run's 1/sqrt(d) (its own d: a study may vary it).
    """
    if name.endswith(SQRT_D):
        return reduce_runs(ds, name.removesuffix(SQRT_D), reduce) / run_std_references(ds)
    da = ds[name]
    if not set(da.dims) & set(TIME_DIMS):  # one number per run, e.g. eval_linear_top1
        return da
    (dim,) = [d for d in da.dims if d in TIME_DIMS]
    if reduce == "best":
        return da.min(dim) if name in LOWER_IS_BETTER else da.max(dim)
    if reduce != "final":
        raise ValueError(f"reduce must be 'final' or 'best', not {reduce!r}")
    values = da.transpose(..., dim).values
    valid = ~np.isnan(values)
    last = values.shape[-1] - 1 - np.argmax(valid[..., ::-1], axis=-1)
    out = np.take_along_axis(values, last[..., None], axis=-1)[..., 0]
    out = np.where(valid.any(axis=-1), out, np.nan)
    return xr.DataArray(
        out, dims=[d for d in da.dims if d != dim], coords={d: ds[d] for d in da.dims if d != dim}
    )


@dataclass(frozen=True)
class Cell:
    """A metric over seeds: mean, sample std (ddof=1; NaN for one seed), number of seeds."""

    mean: float
    std: float
    n: int

    def text(self, scale: float = 1.0) -> str:
        """``mean ± std`` (times ``scale``), 3 significant digits, std at the mean's precision."""
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        m = abs(self.mean * scale)
        decimals = 3 if m == 0 else min(6, max(0, 2 - math.floor(math.log10(m))))
        mean = f"{self.mean * scale:.{decimals}f}"
        return mean if self.n < 2 else f"{mean} ± {self.std * scale:.{decimals}f}"


@dataclass
class Row:
    """One variant of one study."""

    study: str
    variant: str
    seeds: int
    status: str
    cells: dict[str, Cell]
    verdict: str = ""
    paper: str = ""


@dataclass
class CompareTable:
    """The comparison: rows, the metrics in column order, and notes to show with it."""

    rows: list[Row]
    metrics: list[str]
    reduce: Reduce
    notes: list[str] = field(default_factory=list)
    has_verdict: bool = False

    def columns(self) -> list[str]:
        """Header of the text formats (short metric names, see :data:`HEADERS`)."""
        head = ["study"] if self.multi_study() else []
        head += ["variant", "seeds", "status", *(HEADERS.get(m, m) for m in self.metrics)]
        head += ["verdict"] if self.has_verdict else []
        return head + (["paper"] if self.has_paper() else [])

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
            verdict = [r.verdict or "-"] if self.has_verdict else []
            head = [r.study] if self.multi_study() else []
            paper = [r.paper] if self.has_paper() else []
            out.append([*head, r.variant, str(r.seeds), r.status, *cells, *verdict, *paper])
        return out

    def to_frame(self) -> pd.DataFrame:
        """Numbers as a DataFrame: ``<metric>``, ``<metric>_std``, ``<metric>_n`` per metric."""
        records = []
        for r in self.rows:
            rec: dict[str, object] = {"study": r.study, "variant": r.variant, "seeds": r.seeds}
            rec["status"] = r.status
            for m in self.metrics:
                c = r.cells[m]
                rec.update({m: c.mean, f"{m}_std": c.std, f"{m}_n": c.n})
            rec.update({"verdict": r.verdict, "paper": r.paper})
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def format(self, fmt: Format) -> str:
        """The table as ``csv`` (raw numbers), ``markdown``, ``latex`` or plain ``table`` text."""
        if fmt == "csv":
            buf = io.StringIO()
            self.to_frame().to_csv(buf, index=False, lineterminator="\n")
            return buf.getvalue()
        head, rows = self.columns(), self.text_rows()
        if fmt == "markdown":
            lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |"]
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        elif fmt == "latex":
            esc = [[_tex(c) for c in r] for r in [head, *rows]]
            lines = [r"\begin{tabular}{" + "l" * len(head) + "}", r"\toprule"]
            lines += [" & ".join(esc[0]) + r" \\", r"\midrule"]
            lines += [" & ".join(r) + r" \\" for r in esc[1:]]
            lines += [r"\bottomrule", r"\end{tabular}"]
        elif fmt == "table":
            buf = io.StringIO()
            csv.writer(buf, delimiter="\t", lineterminator="\n").writerows([head, *rows])
            lines = [buf.getvalue().rstrip("\n")]
        else:
            raise ValueError(f"format must be table, csv, markdown or latex, not {fmt!r}")
        notes = [f"% {n}" if fmt == "latex" else f"note: {n}" for n in self.notes]
        return "\n".join([*lines, *notes]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}
_TEX |= {"~": r"\textasciitilde{}", "‖": r"$\|$", "·√d": r"$\cdot\sqrt{d}$", "α": r"$\alpha$"}


def _tex(text: str) -> str:
    for a, b in _TEX.items():  # backslash first: the others insert backslashes
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("->", r"$\to$")


def compare(
    studies: Mapping[str, xr.Dataset] | xr.Dataset,
    metrics: Sequence[str] | None = None,
    reduce: Reduce = "final",
    paper: Mapping[str, Mapping[str, object]] | None = None,
    sort: str | None = None,
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

    Raises:
        ResultsError: a requested metric is missing (the message lists what exists).
    """
    if isinstance(studies, xr.Dataset):
        studies = {str(studies.attrs.get("study", "study")): as_study(studies)}
    table = CompareTable([], [], reduce)
    table.notes.append(f"{reduce} value of each run; mean ± sample std (ddof=1) over seeds")
    for study, ds in studies.items():
        present = scalar_metrics(ds)
        names = list(metrics or [m for m in DEFAULT_METRICS if m.removesuffix(SQRT_D) in present])
        check_metrics(ds, [m.removesuffix(SQRT_D) for m in names])
        if any(m.endswith(SQRT_D) for m in names) and run_std_references(ds).isnull().all():
            raise ResultsError(f"{study}: d is unknown (no std_reference attr or model.dim)")
        table.metrics += [m for m in names if m not in table.metrics]
        reduced = {m: reduce_runs(ds, m, reduce) for m in names}
        exists = run_exists(ds)
        verdicts = final_verdicts(ds)
        table.has_verdict |= verdicts is not None
        prefix = f"{study}: " if len(studies) > 1 else ""
        table.notes += [prefix + n for n in run_notes(ds)]
        ref = std_reference(ds)
        if ref and any("std" in m and not m.endswith(SQRT_D) for m in names):
            d = round(1 / ref**2)
            table.notes.append(f"{prefix}std reference 1/sqrt(d) = {ref:.4g} (d = {d})")
        notes = (paper or {}).get(study, {})
        rank = {v: i for i, v in enumerate(notes)}  # a study file's variant order
        for variant in sorted(ds["variant"].values, key=lambda v: rank.get(str(v), len(rank))):
            ok = exists.sel(variant=variant).values
            cells = {}
            for m, da in reduced.items():
                v = da.sel(variant=variant).values[ok]
                v = v[~np.isnan(v)]
                std = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
                cells[m] = Cell(float(np.mean(v)) if len(v) else math.nan, std, len(v))
            status = ds["status"].sel(variant=variant).values[ok]
            counts = Counter(str(s) for s in status)
            row = Row(study, str(variant), int(ok.sum()), _status_text(counts), cells)
            if verdicts is not None:
                row.verdict = majority(list(verdicts.sel(variant=variant).values[ok]))
            row.paper = paper_text(normalise(notes.get(str(variant), "")))
            table.rows.append(row)
    for r in table.rows:  # metrics another study lacks
        for m in table.metrics:
            r.cells.setdefault(m, Cell(math.nan, math.nan, 0))
    if sort is not None:
        if sort not in table.metrics:
            raise ResultsError(f"--sort {sort}: not a shown metric ({', '.join(table.metrics)})")
        sign = 1 if sort in LOWER_IS_BETTER else -1
        table.rows.sort(key=lambda r: (math.isnan(r.cells[sort].mean), sign * r.cells[sort].mean))
    return table


def _status_text(counts: Counter[str]) -> str:
    if list(counts) == ["finished"]:
        return "finished"
    total = sum(counts.values())
    return ", ".join(f"{n}/{total} {s}" for s, n in counts.items() if s != "finished")


__all__ = [
    "CompareTable",
    "check_metrics",
    "compare",
    "config_conflicts",
    "load_studies",
    "majority",
    "reduce_runs",
    "scalar_metrics",
]
