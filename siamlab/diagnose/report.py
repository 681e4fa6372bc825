"""The short report ``siamlab diagnose`` prints, from ``diagnostics.nc`` alone. Torch-free.

A header (what was read, on which images, which outputs), the verdict with its evidence
and, for a folder of checkpoints, the collapse onset; then one row per epoch: the state,
the std of the judged output's l2-normalised rows (1/sqrt(d) when healthy, 0 collapsed),
its residual std·sqrt(d) (1 = isotropic), effective rank and RankMe, alpha-ReQ of h and the
kNN top-1 where the images have labels.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from siamlab.diagnose.verdict import NEEDS_LOSS

MAX_ROWS = 25
EPOCH_FROM = {
    "stored": "(stored in the file)",
    "name": "(from the file name)",
    "unknown": "(unknown: taken as 1)",
}


def _columns(ds: xr.Dataset, basis: str) -> list[tuple[str, str, str]]:
    """(title, variable, format) of the table, for what ``ds`` holds."""
    cols = [
        (f"std {basis}/|{basis}|", f"{basis}_std_eval", "{:.4f}"),
        ("resid std", f"{basis}_residual_std", "{:.3f}"),
        ("resid norm", f"{basis}_residual_norm", "{:.3f}"),
        ("erank", f"{basis}_erank", "{:.1f}"),
        ("RankMe", f"{basis}_rankme", "{:.1f}"),
        ("alpha(h)", "h_alpha", "{:.2f}"),
        ("kNN top-1", "knn_top1", "{:.1%}"),
    ]
    return [c for c in cols if c[1] in ds.data_vars]


def _cell(ds: xr.Dataset, name: str, epoch: int, fmt: str) -> str:
    value = float(ds[name].sel(epoch=epoch))
    return fmt.format(value) if math.isfinite(value) else "-"


def _rows(epochs: list[int], keep: set[int]) -> list[int]:
    """At most :data:`MAX_ROWS` epochs, evenly spread, with the first, last and ``keep``."""
    if len(epochs) <= MAX_ROWS:
        return epochs
    picked = {epochs[int(i)] for i in np.linspace(0, len(epochs) - 1, MAX_ROWS - len(keep))}
    return sorted(picked | keep | {epochs[0], epochs[-1]})


def _onset_lines(ds: xr.Dataset) -> list[str]:
    states = [str(s) for s in ds["verdict"].values]
    epochs = [int(e) for e in ds["epoch"].values]
    first = next((e for e, s in zip(epochs, states, strict=True) if s == "collapsed"), None)
    if len(epochs) < 2:
        return []
    if ds.attrs.get("verdict") == "collapsed" and not int(ds.attrs.get("verdict_provisional", 1)):
        onset = int(ds.attrs["verdict_onset_epoch"])
        return [f"collapse onset: epoch {onset} (the first of the streak that entered it)"]
    if first is not None:
        return [f"collapse onset: none entered; first checkpoint judged collapsed: epoch {first}"]
    return ["collapse onset: none (no checkpoint judged collapsed)"]


def report_lines(ds: xr.Dataset, run_verdict: str | None = None) -> list[str]:
    """The report of a diagnosis.

    Args:
        ds: the diagnosis (:func:`siamlab.diagnose.results.build_dataset`).
        run_verdict: the training run's own verdict, when the checkpoint belongs to one.
    """
    a = ds.attrs
    basis = str(a.get("verdict_branch", "z"))
    files = [line.split("\t", 1) for line in str(a.get("checkpoints", "")).splitlines()]
    single = len(files) == 1
    where = files[0][1] if single else f"{len(files)} checkpoints in {a['source']}"
    epochs_text = f"epoch {files[0][0]}" if single else f"epochs {files[0][0]}-{files[-1][0]}"
    source = EPOCH_FROM.get(str(a.get("epoch_from")), str(a.get("epoch_from")))
    lines = [
        f"checkpoint  {where} ({a.get('checkpoint_format')}, {epochs_text} {source})",
        f"data        {a.get('data')}",
        f"measured    {a.get('measured')}",
    ]
    provisional = (
        " (provisional: not held long enough)" if int(a.get("verdict_provisional", 0)) else ""
    )
    evidence = ds["verdict_evidence"].values[-1] if single else a.get("verdict_evidence")
    lines.append(f"verdict     {a.get('verdict')}{provisional}: {evidence}")
    needs = ", ".join(NEEDS_LOSS)
    lines.append(f"            judged on {basis} from embeddings alone (need the loss: {needs})")
    if run_verdict:
        lines.append(f"            the run's own verdict (with its loss): {run_verdict}")
    lines += _onset_lines(ds)
    cols = _columns(ds, basis)
    epochs = [int(e) for e in ds["epoch"].values]
    titles = ["epoch", "state", *(c[0] for c in cols)]
    table = [titles]
    for e in _rows(epochs, set()):
        state = str(ds["verdict"].sel(epoch=e).item())
        table.append([str(e), state, *(_cell(ds, n, e, f) for _, n, f in cols)])
    widths = [max(len(row[i]) for row in table) for i in range(len(titles))]
    for row in table:
        cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        lines.append("  " + "  ".join(cells))
    ref = a.get("std_reference")
    if ref is not None:
        lines.append(
            f"  (std of {basis}/|{basis}|: 1/sqrt(d) = {float(ref):.4f} when spread, 0 when "
            "collapsed; resid std: 1 = isotropic residual)"
        )
    return lines
