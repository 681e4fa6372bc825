"""What deterministic mode's NaN fill of new tensors costs a training step.

``torch.use_deterministic_algorithms(True)`` (siamlab's ``train.deterministic``) also sets
``torch.utils.deterministic.fill_uninitialized_memory``: every tensor torch allocates
without initialising is first filled with NaN, a guard against kernels that read memory
they never wrote. siamlab turns the fill off (``siamlab.train.device.configure_torch``;
``tests/test_speed.py`` checks that steps are bit-equal with and without it). This times
four arms side by side in interleaved blocks, in one process: siamlab's step (the
profile's precision, its step diagnostics on) and the plain reference step, each with
the fill on and off.

    python benchmarks/nan_fill.py                      # quick profile, ~3 min on 2 cores
    python benchmarks/nan_fill.py --steps 800 --set train.precision=fp32
"""

from __future__ import annotations

import statistics

import torch

from siamlab.bench.ab import ab_parser, prepared_run
from siamlab.bench.measure import Arm, interleave
from siamlab.bench.runner import _reference_arm, _siamlab_arm
from siamlab.train.speed import speed_label


def with_fill(arm: Arm, fill: bool) -> Arm:
    """``arm`` under its own setting of the fill (set before each of its blocks)."""

    def run_block(n: int) -> None:
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
        arm.run_block(n)

    return Arm(f"{arm.name}, fill {'on' if fill else 'off'}", run_block, arm.batch)


def main() -> None:
    """Time the four arms and print their rates and paired ratios."""
    args = ab_parser(__doc__ or "", steps=500).parse_args()
    with prepared_run("nan_fill", args.profile, args.sets) as (spec, device, data, pool):
        label = f"siamlab {speed_label(spec.config.train)}"
        ours, _, monitor = _siamlab_arm(spec, data, device, pool, label)
        ref, _ = _reference_arm(spec, device, pool)
        arms = [with_fill(ours, True), with_fill(ours, False)]
        arms += [with_fill(ref, True), with_fill(ref, False)]
        try:
            interleave(arms, args.steps, args.block, device, warmup=2)
        finally:
            monitor.close()
            torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    base = arms[2]
    print(f"{args.profile} profile, {torch.get_num_threads()} threads, {args.steps} steps/arm")
    print(f"{'arm':34s} {'img/s':>8s}  paired ratio to '{base.name}' (median, mean ± sem)")
    for arm in arms:
        r = [a / b for a, b in zip(arm.block_rates, base.block_rates, strict=True)]
        sem = statistics.stdev(r) / len(r) ** 0.5 if len(r) > 1 else float("nan")
        print(
            f"{arm.name:34s} {arm.rate:8.1f}  {statistics.median(r):.3f}, "
            f"{statistics.mean(r):.3f} ± {sem:.3f}"
        )


if __name__ == "__main__":
    main()
