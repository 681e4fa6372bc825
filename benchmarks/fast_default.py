"""Does the quick profile's fast path change a study's outcome? fp32 vs fast, seed by seed.

The quick profile trains with ``train.precision=auto`` (bf16 autocast of the training
forward and channels_last where the CPU has AVX512-BF16/AMX, or on CUDA; on other CPUs
fp32 with channels_last, whose NHWC kernels round otherwise than the exact path's).
This script runs a study twice per seed -- the exact path (``--set train.precision=fp32``)
and the profile's default -- each with ``siamlab run`` in a fresh process, one after the
other, and times every job. Then it compares, per variant, what a researcher reads off:

* the run verdict of every seed, fp32 vs fast (and the epoch it was entered, where it is
  not healthy);
* the last evaluation's ``z_std_eval`` x sqrt(d), ``z_residual_norm``, ``z_erank_fraction`` and
  ``knn_top1``: their means over seeds, the difference fast - fp32 and whether it lies
  within the seed spread, i.e. |difference| <= 2 x the standard error of a difference of
  two n-seed means (2 x s x sqrt(2 / n), s the pooled seed std of both arms).

Re-running resumes: finished runs are skipped and keep the time they were measured in
(``times.json``). The table goes to stdout and ``OUT/outcome.md``.

    python benchmarks/fast_default.py                      # em_hypothesis, seeds 0-2: ~50 min here
    python benchmarks/fast_default.py --seeds 0 --study studies/stopgrad.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import xarray as xr

from siamlab.config.seeds import parse_seeds
from siamlab.config.study import read_study
from siamlab.results.store import open_study

ARMS = {"fp32": ["train.precision=fp32"], "fast": []}  # fast: the profile's own settings
METRICS = {  # variable -> (header, scale by sqrt(d))
    "z_std_eval": ("std·√d", True),
    "z_residual_norm": ("residual norm", False),
    "z_erank_fraction": ("erank / d", False),
    "knn_top1": ("kNN top-1", False),
}


def run_arm(study: Path, arm: str, seed: int, out: Path, sets: list[str]) -> float:
    """Train one seed of ``study`` on ``arm`` in a fresh ``siamlab run``; its wall seconds."""
    cmd = [sys.executable, "-m", "siamlab", "run", str(study), "--seeds", str(seed)]
    cmd += ["--no-progress", "--set", f"output.root={out / arm}"]
    for item in [*ARMS[arm], *sets]:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False)
    if done.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}")
    return time.perf_counter() - t0


def last_value(ds: xr.Dataset, name: str, variant: str, seed: int) -> float:
    """The last evaluated epoch's value of ``name`` (NaN when the run has none)."""
    if name not in ds:
        return math.nan
    values = ds[name].sel(variant=variant, seed=seed).dropna("epoch").values
    return float(values[-1]) if len(values) else math.nan


def _verdict(ds: xr.Dataset, variant: str, seed: int) -> str:
    """A run's final verdict and, where it is not healthy, its onset epoch (``collapsed ep 26``)."""
    run = {"variant": variant, "seed": seed}
    verdict = str(ds["final_verdict"].sel(run).item())
    onset = ds["final_verdict_onset_epoch"].sel(run).item()
    return (
        verdict if verdict == "healthy" or not math.isfinite(onset) else f"{verdict} ep {onset:.0f}"
    )


def within_spread(a: list[float], b: list[float]) -> tuple[float, bool]:
    """(difference of means b - a, whether it is within 2 standard errors of a difference)."""
    diff = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, False
    pooled = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)
    return diff, abs(diff) <= 2 * pooled * math.sqrt(2 / min(len(a), len(b)))


def outcome_table(
    out: Path, study_name: str, seeds: list[int], order: list[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Markdown lines comparing the arms; the runs whose verdicts differ; metrics outside.

    ``order``: the variants in the study file's order (default: as stored).
    """
    data = {arm: open_study(out / arm / study_name) for arm in ARMS}
    dim = int(data["fp32"].attrs.get("dim", 0)) or None
    head = ["variant", "verdict per seed, fp32 / fast", *(METRICS[m][0] for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    flips: list[str] = []
    outside: list[str] = []
    stored = list(map(str, data["fp32"]["variant"].values))
    for variant in [v for v in order or stored if v in stored]:
        verdicts = [[_verdict(data[arm], variant, s) for s in seeds] for arm in ARMS]
        states = [[v.split(" ")[0] for v in arm] for arm in verdicts]
        differ = [s for s, a, b in zip(seeds, *states, strict=True) if a != b]
        flips.extend(f"{variant}/seed{s}" for s in differ)
        cells = [
            variant,
            f"{', '.join(verdicts[0])} / {', '.join(verdicts[1])}" + " ✓" * (not differ),
        ]
        for name, (_, by_sqrt_d) in METRICS.items():
            values = [[last_value(data[arm], name, variant, s) for s in seeds] for arm in ARMS]
            ds0 = data["fp32"]
            scale = math.sqrt(ds0.sizes.get("channel", 0) or dim or 1) if by_sqrt_d else 1.0
            a, b = ([v * scale for v in arm_values] for arm_values in values)
            diff, ok = within_spread(a, b)
            if not ok and len(seeds) > 1:
                outside.append(f"{variant} {name}")
            mark = (" ✓" if ok else " ✗") if len(seeds) > 1 else ""
            cells.append(
                f"{statistics.fmean(a):.3f} / {statistics.fmean(b):.3f} ({diff:+.3f}{mark})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines, flips, outside


def main() -> None:
    """Train the missing runs of both arms, seed by seed, then print and write the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", type=Path, default=Path("studies/em_hypothesis.yaml"))
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--out", type=Path, default=Path("results/fast_default"))
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--train-only", default="", help="train only this arm now (fp32 or fast)")
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)
    study = read_study(args.study)
    name = study.name
    args.out.mkdir(parents=True, exist_ok=True)
    times_file = args.out / "times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    for seed in seeds:  # seed by seed, the arms side by side under the same machine load
        for arm in [args.train_only] if args.train_only else ARMS:
            key = f"{arm}/seed{seed}"
            seconds = run_arm(args.study, arm, seed, args.out, args.sets)
            if key not in times or seconds > 0.5 * times[key]:  # not a skip of finished runs
                times[key] = seconds
            times_file.write_text(json.dumps(times, indent=1))
    if args.train_only:
        return
    lines, flips, outside = outcome_table(args.out, name, seeds, list(study.variants))
    runs = len(study.variants) * len(seeds)
    per_arm = {arm: [times[f"{arm}/seed{s}"] for s in seeds] for arm in ARMS}
    mean = {arm: statistics.fmean(t) for arm, t in per_arm.items()}
    load = os.getloadavg()[0]
    summary = [
        f"`{args.study}`, seeds {args.seeds}, values of the last evaluation, mean over seeds "
        "fp32 / fast (fast - fp32; ✓ within 2 standard errors of a difference of means).",
        "",
        *lines,
        "",
        "job time per seed, s: "
        + ", ".join(f"{arm} {' '.join(f'{t:.0f}' for t in ts)}" for arm, ts in per_arm.items())
        + f"; fast is {mean['fp32'] / mean['fast']:.2f}x faster (load average now {load:.1f})",
        f"verdicts: {runs - len(flips)} of {runs} runs the same"
        + (f"; different: {', '.join(flips)}" if flips else ""),
        "metrics: every mean within the seed spread"
        if not outside
        else f"metrics outside the seed spread: {', '.join(outside)}",
    ]
    text = "\n".join(summary)
    (args.out / "outcome.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
