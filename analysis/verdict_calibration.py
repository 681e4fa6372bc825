"""Calibrate the collapse verdict on labelled runs and test it on runs it was not tuned on.

The labelled runs are ``studies/verdict_calibration.yaml`` (outcome known by
construction, each run's ``paper`` attr) plus any other study whose variants carry a
``paper: outcome`` (stopgrad, predictor, ...), and synthetic trajectories for the two
outcomes no short real run shows on demand: an oscillating loss (unstable) and a loss
that never leaves its start (not converging). Every run is re-judged from its
``metrics.nc`` alone with :mod:`siamlab.diagnostics.verdict_rule`, so thresholds can be
varied without training again.

Thresholds are chosen on the *tuning* part only (default: digits, seed 0, and the
synthetic seed 0): the grid point with the most correct run verdicts, and among ties the
one in the middle of the tied range of each threshold (the widest margin). Two stages
(a joint grid of all seven would take ~15 min): :data:`GRID`, four thresholds with
``partial_collapse``'s at their defaults, then :data:`PARTIAL_GRID`, those three jointly,
with the others fixed at stage one's choice. The
confusion table is then reported on the *test* part (every other run).

Usage::

    python analysis/verdict_calibration.py results/calib_digits results/calib_cifar \
        --tune "digits:0" --out docs/verdict-calibration.md
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict import signals_from_epochs
from siamlab.diagnostics.verdict_rule import EpochSignals, RunVerdict, judge_epoch, run_verdict
from siamlab.results.rejudge import judge_inputs
from siamlab.results.store import NETCDF_ENGINE
from siamlab.results.verdicts import OUTCOME_VERDICTS

# the paper's outcome -> its label here: the first verdict that agrees with it; a run is
# right with any of them (OUTCOME_VERDICTS, the same table `siamlab compare`'s agrees
# column uses: a run expected to collapse completely is also right on its way there,
# partial_collapse, as a short run need not finish a collapse the paper saw after 100
# ImageNet epochs)
EXPECTED = {outcome: verdicts[0] for outcome, verdicts in OUTCOME_VERDICTS.items()}
ACCEPTED = {verdicts[0]: verdicts for verdicts in OUTCOME_VERDICTS.values()}
LABELS = ("healthy", "collapsed", "partial_collapse", "dimensional_collapse", "not_converging",
          "unstable")  # fmt: skip
GRID = {
    "collapsed_residual_norm": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "dimensional_erank_fraction": (0.005, 0.01, 0.02, 0.03, 0.05, 0.08),
    "not_converging_progress": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4),
    "unstable_noise_ratio": (2.0, 3.0, 4.0, 6.0, 8.0),
}
PARTIAL_GRID = {  # stage two: partial_collapse's clause, jointly
    "partial_residual_norm": (0.6, 0.65, 0.7071, 0.75, 0.8, 0.85, 0.9),
    "partial_erank_fraction": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "partial_residual_std": (0.7, 0.8, 0.85, 0.9, 0.95),
}
TUNED = (*GRID, *PARTIAL_GRID)  # every threshold the calibration chooses


@dataclass(frozen=True)
class LabelledRun:
    """One run's evaluated epochs and its label."""

    name: str  # <data>/<study>/<variant>/seed<k>
    data: str  # digits | cifar | synthetic
    seed: int
    expected: str
    status: str
    epochs: list[dict[str, Any]]


def records_of(ds: xr.Dataset, start_steps: int) -> list[dict[str, Any]]:
    """Per evaluated epoch, what the rule reads: as recorded, or derived from step values
    (a run recorded before the judge stored its inputs; its start over ``start_steps``)."""
    recorded = "cosine_loss" in ds and "loss_noise" in ds
    return judge_inputs(ds, None if recorded else start_steps)


def training_key(config_yaml: str, seed: int) -> str:
    """What makes two runs the same training: the config without verdict and output settings.

    Two studies can hold the same run under different names (stopgrad's ``stop_grad`` is
    predictor's ``lr_cosine``); the verdict thresholds and the output folder change
    nothing that is trained, so such a pair is one labelled run, counted once.
    """
    config = yaml.safe_load(config_yaml) or {}
    config.pop("output", None)
    config.get("diagnostics", {}).pop("verdict", None)
    return yaml.safe_dump(config, sort_keys=True) + f"seed: {seed}"


def load_runs(roots: Sequence[Path], start_steps: int) -> list[LabelledRun]:
    """Every run under ``roots`` whose ``paper`` attr has an outcome, each training once."""
    runs, seen = [], set()
    for path in sorted(p for root in roots for p in root.glob("*/*/seed*/metrics.nc")):
        with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
            paper = yaml.safe_load(ds.attrs.get("paper", "") or "{}")
            outcome = paper.get("outcome") if isinstance(paper, dict) else None
            if outcome not in EXPECTED or not np.isfinite(ds["z_std_eval"].values).any():
                continue
            data = "cifar" if "npz" in ds.attrs.get("config", "") else "digits"
            key = training_key(ds.attrs.get("config", ""), int(ds.attrs["seed"]))
            if key in seen:  # the same training under another study's name
                continue
            seen.add(key)
            study, variant, seed = path.parts[-4], path.parts[-3], path.parts[-2]
            runs.append(
                LabelledRun(
                    f"{data}/{study}/{variant}/{seed} ({int(ds['epoch'].values.max())} ep)",
                    data,
                    int(ds.attrs["seed"]),
                    EXPECTED[outcome],
                    str(ds.attrs.get("status", "")),
                    records_of(ds.load(), start_steps),
                )
            )
    return runs


def synthetic_runs(seeds: Sequence[int] = (0, 1), evaluations: int = 20) -> list[LabelledRun]:
    """Trajectories for the outcomes short real runs do not show on demand.

    Both have a healthy geometry (residual norm 0.95, erank fraction 0.4); per epoch
    ``steps`` step losses are drawn and reduced as the judge does:

    * ``oscillating``: the loss falls to -0.6 while alternating by +-0.1 from step to step
      (4x its sampling noise of 0.025);
    * ``flat``: the loss stays at its start, -0.1, with the sampling noise only (the
      paper's fixed random predictor).
    """
    from siamlab.diagnostics.verdict_rule import loss_jitter

    out, steps, sem = [], 31, 0.025
    for seed, kind in itertools.product(seeds, ("oscillating", "flat")):
        rng = np.random.default_rng(seed)
        records = []
        for e in range(1, evaluations + 1):
            t = np.arange(steps) + (e - 1) * steps
            if kind == "oscillating":
                trend = -0.1 - 0.5 * (1 - np.exp(-t / 200))
                losses = trend + 0.1 * (-1.0) ** t + rng.normal(0, sem, steps)
            else:
                losses = -0.1 + rng.normal(0, sem, steps)
            records.append(
                {
                    "epoch": e,
                    "cosine_loss": float(losses.mean()),
                    "start_loss": -0.1,
                    "loss_noise": sem,
                    "loss_jitter": loss_jitter(losses.tolist()),
                    "z_std_eval": 0.04,
                    "z_residual_norm": 0.95,
                    "z_residual_erank_fraction": 0.4,
                    "z_residual_std": 0.99,
                }
            )
        expected = "unstable" if kind == "oscillating" else "not_converging"
        out.append(LabelledRun(f"synthetic/{kind}/seed{seed}", "synthetic", seed, expected,
                               "finished", records))  # fmt: skip
    return out


def right(run: LabelledRun, verdict: str) -> bool:
    """Whether ``verdict`` is the outcome ``run`` is labelled with (:data:`ACCEPTED`)."""
    return verdict in ACCEPTED.get(run.expected, (run.expected,))


def judge_run(
    run: LabelledRun, cfg: VerdictConfig, signals: Sequence[EpochSignals] | None = None
) -> RunVerdict:
    """The run verdict of ``run`` under ``cfg`` (a diverged run is unstable).

    ``signals``: the run's per-epoch signals if already computed (they depend on
    ``cfg.hold_evaluations`` and ``start_steps`` only, not on the tuned thresholds).
    """
    if run.status == "diverged":
        return RunVerdict("unstable", 0, "diverged", False)
    if signals is None:
        signals = signals_from_epochs(run.epochs, cfg)
    judged = [(s.epoch, *judge_epoch(cfg, s)) for s in signals]
    return run_verdict(judged, cfg.hold_evaluations)


def grid_search(
    runs: Sequence[LabelledRun],
    signals: Sequence[Sequence[EpochSignals]],
    base: VerdictConfig,
    grid: dict[str, tuple[float, ...]],
) -> tuple[VerdictConfig, int]:
    """The point of ``grid`` (other thresholds from ``base``) with most correct verdicts.

    Ties: the middle of the tied range of each threshold (the widest margin), or, if that
    combination scores less, the middle tied point.
    """
    scores: dict[tuple[float, ...], int] = {}
    for point in itertools.product(*grid.values()):
        cfg = base.model_copy(update=dict(zip(grid, point, strict=True)))
        scores[point] = sum(
            right(r, judge_run(r, cfg, s).verdict) for r, s in zip(runs, signals, strict=True)
        )
    best = max(scores.values())
    tied = np.array([p for p, s in scores.items() if s == best])  # (n_tied, n_thresholds)
    middles = [sorted(set(tied[:, i])) for i in range(len(grid))]
    cfg = base.model_copy(
        update={n: float(v[len(v) // 2]) for n, v in zip(grid, middles, strict=True)}
    )
    pairs = zip(runs, signals, strict=True)
    if sum(right(r, judge_run(r, cfg, s).verdict) for r, s in pairs) < best:
        cfg = base.model_copy(update=dict(zip(grid, map(float, tied[len(tied) // 2]), strict=True)))
    return cfg, best


def tune(runs: Sequence[LabelledRun], base: VerdictConfig) -> tuple[VerdictConfig, int]:
    """Stage one over :data:`GRID`, then stage two over :data:`PARTIAL_GRID` (module doc)."""
    signals = [signals_from_epochs(r.epochs, base) for r in runs]  # the grid keeps them
    first, _ = grid_search(runs, signals, base, GRID)
    return grid_search(runs, signals, first, PARTIAL_GRID)


def confusion(runs: Sequence[LabelledRun], cfg: VerdictConfig) -> str:
    """Markdown confusion table (rows: expected, columns: verdict) and the hit rate."""
    labels = LABELS
    counts = Counter((r.expected, judge_run(r, cfg).verdict) for r in runs)
    head = "| expected \\ verdict | " + " | ".join(labels) + " |"
    lines = [head, "|" + "---|" * (len(labels) + 1)]
    for exp in labels:
        if any(e == exp for e, _ in counts):
            lines.append(f"| {exp} | " + " | ".join(str(counts[exp, v]) for v in labels) + " |")
    hits = sum(right(r, judge_run(r, cfg).verdict) for r in runs)
    complete = sum(n for (e, v), n in counts.items() if e == v)
    lines.append(
        f"\n{hits} of {len(runs)} run verdicts right ({100 * hits / len(runs):.0f}%; "
        f"{complete} if a collapse must be complete, not partial_collapse)."
    )
    return "\n".join(lines)


def _last(run: LabelledRun, key: str) -> float:
    return float(run.epochs[-1].get(key, np.nan))


def per_run(runs: Sequence[LabelledRun], cfg: VerdictConfig) -> str:
    """One markdown row per run: expected, verdict, onset, last figures, evidence."""
    lines = [
        "| run | expected | verdict | onset | resid. norm | resid. erank | max noise ratio "
        "| kNN | evidence |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        v = judge_run(r, cfg)
        mark = "" if right(r, v.verdict) else " **(wrong)**"
        ratios = [s.noise_ratio for s in signals_from_epochs(r.epochs, cfg)]
        ratio = np.nanmax(ratios) if np.isfinite(ratios).any() else np.nan
        lines.append(
            f"| {r.name} | {r.expected} | {v.verdict}{mark} | {v.onset_epoch} "
            f"| {_last(r, 'z_residual_norm'):.3f} | {_last(r, 'z_residual_erank_fraction'):.3f} "
            f"| {ratio:.2f} | {_last(r, 'knn_top1'):.3f} | {v.evidence.replace('|', '/')} |"
        )
    return "\n".join(lines)


def tuning_parts(spec: str) -> set[tuple[str, int]]:
    """``"digits:0,cifar:0"`` -> {(data, seed)}, plus the synthetic runs of the first seed."""
    parts = set()
    for item in spec.split(","):
        data, _, seed = item.strip().partition(":")
        if not data or not seed.isdigit():
            raise SystemExit(f"--tune {spec!r}: expected DATA:SEED[,DATA:SEED...], e.g. digits:0")
        parts.add((data, int(seed)))
    first_seed = int(spec.split(",")[0].partition(":")[2])
    return parts | {("synthetic", first_seed)}


def describe_parts(parts: set[tuple[str, int]]) -> str:
    """``digits seed 0 + cifar seed 0 + synthetic seed 0``."""
    ordered = sorted(parts, key=lambda p: (p[0] == "synthetic", p))
    return " + ".join(f"{data} seed {seed}" for data, seed in ordered)


def main(argv: Sequence[str] | None = None) -> str:
    """Tune on the tuning part, report on the rest; returns (and prints) the markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="results roots (results/<root>)")
    parser.add_argument(
        "--tune", default="digits:0", help="DATA:SEED[,DATA:SEED...] of the tuning part"
    )
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--no-tune", action="store_true", help="judge with the defaults")
    args = parser.parse_args(argv)
    base = VerdictConfig()
    runs = load_runs(args.roots, base.start_steps) + synthetic_runs()
    parts = tuning_parts(args.tune)
    tuning = [r for r in runs if (r.data, r.seed) in parts]
    testing = [r for r in runs if r not in tuning]
    cfg, best = (base, -1) if args.no_tune else tune(tuning, base)
    chosen = ", ".join(f"`{k}` = {getattr(cfg, k):g}" for k in TUNED)
    command = "python analysis/verdict_calibration.py " + " ".join(
        map(str, argv if argv is not None else sys.argv[1:])
    )
    report = "\n\n".join(
        [
            "# Verdict calibration",
            f"Generated by `{command}` from the runs' metrics.nc files (see README, "
            '"How often the verdict is right", for the runs and their settings).',
            f"Tuned on {len(tuning)} runs ({describe_parts(parts)}): "
            f"{best if best >= 0 else '-'} right. Chosen: {chosen}; `hold_evaluations` = "
            f"{cfg.hold_evaluations}.",
            f"Test part ({len(testing)} runs, not used for tuning):",
            confusion(testing, cfg),
            "Tuning part:",
            confusion(tuning, cfg),
            "Every run:",
            per_run(tuning + testing, cfg),
        ]
    )
    if args.out:
        args.out.write_text(report + "\n")
    print(report)
    return report


if __name__ == "__main__":
    main()
