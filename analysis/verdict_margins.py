"""How far each verdict threshold can move before a run's verdict changes.

For every tuned threshold of :class:`~siamlab.diagnostics.config.VerdictConfig` and each
factor, every run under the given study folders is judged again with that one threshold
scaled (``siamlab.results.rejudge``; nothing is trained or written) and the runs whose
verdict changes are listed. A verdict that survives a threshold moved by a quarter either
way does not hang on the calibration's exact choice.

    python analysis/verdict_margins.py results/verdict_calibration [more study folders]
    python analysis/verdict_margins.py results/stopgrad --factors 0.8,1.25
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from siamlab.diagnostics.config import VerdictConfig
from siamlab.results.rejudge import Rejudged, rejudge

TUNED = (  # the thresholds analysis/verdict_calibration.py chooses
    "collapsed_residual_norm",
    "dimensional_erank_fraction",
    "partial_residual_norm",
    "partial_erank_fraction",
    "partial_residual_std",
    "not_converging_progress",
    "unstable_noise_ratio",
)
FRACTIONS = {k for k in TUNED if k != "unstable_noise_ratio"}  # in (0, 1)


def moved(name: str, factor: float) -> float:
    """Today's ``name`` times ``factor``, kept inside (0, 1) for a fraction."""
    value = float(getattr(VerdictConfig(), name)) * factor
    return min(value, 0.99) if name in FRACTIONS else value


def margins(
    folders: Sequence[Path], factors: Sequence[float]
) -> list[tuple[str, float, float, list[Rejudged]]]:
    """(threshold, factor, value, the runs whose verdict changes) for each pair."""
    base = {(r.study, r.variant, r.seed): r.now.verdict for r in rejudge(folders, {})}
    out = []
    for name in TUNED:
        for factor in factors:
            value = moved(name, factor)
            rows = rejudge(folders, {name: value})
            changed = [r for r in rows if r.now.verdict != base[(r.study, r.variant, r.seed)]]
            out.append((name, factor, value, changed))
    return out


def main() -> None:
    """Print one line per threshold and factor: the runs whose verdict changes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study folders")
    parser.add_argument("--factors", default="0.5,0.75,1.25,1.5", help="comma-separated")
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    total = len(rejudge(args.folders, {}))
    print(f"{total} runs; verdicts that change when one threshold is scaled:")
    for name, factor, value, changed in margins(args.folders, factors):
        runs = ", ".join(f"{r.variant}/seed{r.seed} -> {r.now.verdict}" for r in changed)
        print(f"{name:28s} x{factor:<5g} = {value:<7.3g} {runs or '-'}")


if __name__ == "__main__":
    main()
