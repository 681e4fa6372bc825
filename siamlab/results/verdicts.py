"""Each run's verdict as its results file records it, and what a variant's seeds say together.

A run's ``metrics.nc`` carries its run verdict -- with hysteresis, so one verdict per run
(docs/diagnostics.md, The verdict) -- as the attrs ``verdict``, ``verdict_onset_epoch``,
``verdict_evidence`` and ``verdict_provisional``; :func:`~siamlab.results.store.open_study`
keeps them as the ``final_verdict*`` variables. Files written before the run verdict
existed fall back to the last per-epoch ``run_verdict``, then to the last per-epoch
``verdict`` state. A run ended by ``train.stop_on_collapse`` (status ``stopped_collapsed``)
is a finished run whose verdict is ``collapsed``.
"""

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from siamlab.diagnostics.verdict_rule import VERDICTS, RunVerdict, run_verdict
from siamlab.results.runinfo import run_exists
from siamlab.results.runstate import STOPPED_COLLAPSED
from siamlab.results.store import RUN_ATTRS

PROVISIONAL = "?"  # marks a provisional verdict: no state has held long enough yet
# the paper's outcome (a study file's ``paper: {variant: {outcome: ...}}``) -> verdicts
OUTCOME_VERDICTS: dict[str, tuple[str, ...]] = {
    "no_collapse": ("healthy",),
    # a short run need not finish the collapse the paper saw after 100 ImageNet epochs
    "collapse": ("collapsed", "partial_collapse"),
    "dimensional_collapse": ("dimensional_collapse",),
    "unstable": ("unstable",),
    "diverges": ("unstable",),  # a diverged run's verdict is unstable
    "not_converging": ("not_converging",),
}


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _onset(value: object) -> int:
    onset = _float(value)
    return int(onset) if math.isfinite(onset) else 0


def _stopped(found: RunVerdict, status: str) -> RunVerdict:
    if status == STOPPED_COLLAPSED and not found.verdict:
        return RunVerdict("collapsed", 0, "stopped on collapse (train.stop_on_collapse)", False)
    return found


def verdict_from_attrs(attrs: Mapping[Hashable, Any]) -> RunVerdict:
    """The run verdict of one run's ``metrics.nc`` attrs (empty when it has none)."""
    verdict = attrs.get("verdict")
    found = RunVerdict()
    if isinstance(verdict, str) and verdict:
        evidence = attrs.get("verdict_evidence", "")
        found = RunVerdict(
            verdict,
            _onset(attrs.get("verdict_onset_epoch")),
            evidence if isinstance(evidence, str) else "",
            _float(attrs.get("verdict_provisional")) == 1.0,
        )
    return _stopped(found, str(attrs.get("status", "")))


def _strings(ds: xr.Dataset, name: str, variant: object, seed: object) -> list[str]:
    if name not in ds.data_vars:
        return []
    values = np.ravel(ds[name].sel(variant=variant, seed=seed).values)
    return [v if isinstance(v, str) else "" for v in values]


def _from_epochs(ds: xr.Dataset, variant: object, seed: object) -> RunVerdict:
    """The run verdict of an older file: its last per-epoch run verdict, or state."""
    run = _strings(ds, "run_verdict", variant, seed)
    if any(run):
        i = max(k for k, v in enumerate(run) if v)
        at = {"variant": variant, "seed": seed, "epoch": ds["epoch"][i]}
        evidence = _strings(ds, "run_verdict_evidence", variant, seed)
        onset, provisional = (
            ds[name].sel(at).item() if name in ds.data_vars else 0
            for name in ("run_verdict_onset_epoch", "run_verdict_provisional")
        )
        return RunVerdict(run[i], _onset(onset), evidence[i] if evidence else "", provisional == 1)
    states = _strings(ds, "verdict", variant, seed)
    evidence = _strings(ds, "verdict_evidence", variant, seed) or [""] * len(states)
    epochs = [int(e) for e in ds["epoch"].values] if "epoch" in ds.coords else []
    judged = [(e, s, x) for e, s, x in zip(epochs, states, evidence, strict=False) if s]
    if not judged:
        return RunVerdict()
    last = run_verdict(judged, 1)  # hold 1: the last streak, from its start
    since = f"since epoch {last.onset_epoch} (no run verdict in this file: its last states)"
    return RunVerdict(
        last.verdict, last.onset_epoch, "; ".join(filter(None, [judged[-1][2], since])), False
    )


def run_verdicts(ds: xr.Dataset) -> dict[tuple[str, int], RunVerdict]:
    """(variant, seed) -> run verdict of every run that has results (empty verdicts too)."""
    exists = run_exists(ds)
    out: dict[tuple[str, int], RunVerdict] = {}
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            if not exists.sel(variant=variant, seed=seed):
                continue
            run = {"variant": variant, "seed": seed}
            attrs: dict[Hashable, Any] = {"status": ds["status"].sel(run).item()}
            for key, name in RUN_ATTRS.items():
                if key.startswith("verdict") and name in ds.data_vars:
                    attrs[key] = ds[name].sel(run).item()
            found = verdict_from_attrs(attrs)
            if not found.verdict:
                found = _stopped(_from_epochs(ds, variant, seed), str(attrs["status"]))
            out[(str(variant), int(seed))] = found
    return out


@dataclass(frozen=True)
class SeedVerdicts:
    """The run verdicts of one variant's seeds (runs without a verdict left out)."""

    runs: Sequence[RunVerdict]

    def groups(self) -> list[tuple[str, list[RunVerdict]]]:
        """(verdict, its runs), the most common first; ties in :data:`VERDICTS` order."""
        counts = Counter(r.verdict for r in self.runs if r.verdict)
        order = {v: i for i, v in enumerate(VERDICTS)}
        ranked = sorted(counts, key=lambda v: (-counts[v], order.get(v, len(order)), v))
        return [(v, [r for r in self.runs if r.verdict == v]) for v in ranked]

    def text(self) -> str:
        """``collapsed`` when the seeds agree, else ``collapsed 2/3, healthy 1/3``.

        A verdict is marked ``?`` when any of its runs is provisional; "" without verdicts.
        """
        groups = self.groups()
        total = sum(len(runs) for _, runs in groups)
        parts = []
        for verdict, runs in groups:
            mark = PROVISIONAL if any(r.provisional for r in runs) else ""
            parts.append(verdict + mark + ("" if len(groups) == 1 else f" {len(runs)}/{total}"))
        return ", ".join(parts)

    def onset_text(self) -> str:
        """Onset epoch of the most common verdict: ``ep 12``, ``ep 10-14`` over seeds, or ``-``."""
        groups = self.groups()
        onsets = sorted(r.onset_epoch for r in groups[0][1] if r.onset_epoch > 0) if groups else []
        if not onsets:
            return "-"
        low, high = onsets[0], onsets[-1]
        return f"ep {low}" if low == high else f"ep {low}-{high}"

    def onset_range(self) -> tuple[float, float]:
        """(first, last) onset epoch of the most common verdict over seeds; NaN without one."""
        groups = self.groups()
        onsets = [r.onset_epoch for r in groups[0][1] if r.onset_epoch > 0] if groups else []
        return (min(onsets), max(onsets)) if onsets else (math.nan, math.nan)

    def agrees(self, outcome: object) -> str:
        """Whether the verdicts match the paper's ``outcome`` (:data:`OUTCOME_VERDICTS`).

        Returns:
            ``yes`` (every seed), ``no`` (none), ``k/n`` (some), each marked ``?`` when a
            verdict is provisional; ``-`` without an outcome or a verdict.
        """
        judged = [r for r in self.runs if r.verdict]
        expected = OUTCOME_VERDICTS.get(str(outcome)) if outcome else None
        if expected is None or not judged:
            return "-"
        k = sum(r.verdict in expected for r in judged)
        text = "yes" if k == len(judged) else "no" if k == 0 else f"{k}/{len(judged)}"
        return text + (PROVISIONAL if any(r.provisional for r in judged) else "")
