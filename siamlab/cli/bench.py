"""``siamlab bench``: how fast siamlab trains here, next to a plain reference SimSiam loop."""

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from siamlab.cli.app import app, console, err, fail
from siamlab.config.study import StudyFile, expand_study, read_study
from siamlab.errors import SiamlabError

if TYPE_CHECKING:  # torch: loaded when the command runs
    from siamlab.bench.measure import PairedRatio
    from siamlab.bench.runner import BenchReport


def _fmt(x: float, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if not math.isfinite(x) else f"{x / scale:,.{digits}f}"


def _rounds(paired: "PairedRatio") -> str:
    """A paired ratio as the report says it: the median and its interval (two rounds on)."""
    if paired.rounds < 2:
        return f"round by round {paired.median:.3f}x (1 round: no interval)"
    return (
        f"round by round {paired.median:.3f}x, {paired.level:.0%} interval "
        f"{paired.low:.3f}-{paired.high:.3f} ({paired.rounds} rounds)"
    )


def print_report(report: "BenchReport") -> None:
    """Print the arms' rates, the ratio, the loader's rate and the FLOP/s fractions."""
    table = Table(title=f"siamlab bench ({report.device}, {report.threads} threads)")
    cols = ("loop", "img/s", "blocks min-max", "GFLOP/step", "GFLOP/s", "of peak", "diagnostics")
    for col in cols:
        table.add_column(col, justify="left" if col == "loop" else "right")
    for arm in report.arms:
        low_precision = "bf16" in arm.name and math.isfinite(report.peak_bf16)
        peak = report.peak_bf16 if low_precision else report.peak_fp32
        spread = f"{_fmt(min(arm.block_rates))}-{_fmt(max(arm.block_rates))}"
        table.add_row(
            arm.name,
            _fmt(arm.rate),
            spread if arm.block_rates else "-",
            _fmt(arm.flops, 1e9, 2),
            _fmt(arm.flop_rate, 1e9),
            f"{arm.flop_rate / peak:.0%} ({'bf16' if low_precision else 'fp32'})",
            f"{arm.diag_share:.1%}" if arm.name != "reference" else "-",
        )
    console.print(table)
    if any("CL" in arm.name for arm in report.arms):
        console.print("CL = channels_last; the reference always runs fp32", highlight=False)
    console.print(
        f"ratio siamlab / reference: {report.ratio:.3f}x (img/s over all blocks); "
        f"{_rounds(report.paired)}",
        highlight=False,
    )
    share = report.diag_share
    console.print(
        f"  of siamlab's step time, step diagnostics took {share:.1%} "
        f"(without them: ~{report.ratio / (1 - share):.3f}x)",
        highlight=False,
    )
    parts = ", ".join(f"{name} {v:.1%}" for name, v in report.diag_part_shares)
    console.print(f"  by part: {parts}", highlight=False)
    if report.steps_per_epoch:
        console.print(
            f"  siamlab's steps went through epochs 1-{report.epochs_covered} of the run's "
            f"{report.run_epochs} ({report.steps_per_epoch} steps each): step work scheduled by "
            "epoch (F of predictor_alignment) ran as in those epochs of the run",
            highlight=False,
        )
    base, paired_speedup = report.base, report.paired_speedup
    if base is not None and report.speedup is not None and paired_speedup is not None:
        console.print(
            f"speed-up over siamlab fp32: {report.speedup:.2f}x ({_rounds(paired_speedup)}); "
            f"siamlab fp32 (base) / reference: {base.rate / report.arms[-1].rate:.3f}x, its "
            f"step diagnostics {base.diag_share:.1%}",
            highlight=False,
        )
    train = report.arms[0].rate
    for ld in (report.loader, report.other_loader):
        if ld is None:
            continue
        console.print(
            f"{ld.name} alone: {_fmt(ld.rate)} img/s ({ld.batches} batches, first batch "
            f"{ld.first_batch_s:.2f} s) = {ld.rate / train:.1f}x the training rate"
            + ("" if ld is report.loader else " (not the run's path)"),
            highlight=False,
        )
    console.print(
        f"matmul peak: fp32 {_fmt(report.peak_fp32, 1e9)} GFLOP/s, "
        f"bf16 {_fmt(report.peak_bf16, 1e9)} GFLOP/s; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        highlight=False,
    )
    for note in report.notes:
        err.print(f"note: {note}", highlight=False)


@app.command()
def bench(
    study: Annotated[
        Path | None, typer.Argument(help="Study file (its first run); default: one plain run.")
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Scale: quick (default), cifar10, ...")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a config key (repeatable).")
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help="Variant of the study.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per loop.")] = 20,
    block: Annotated[int, typer.Option(min=1, help="Steps per interleaved block.")] = 5,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps per loop first.")] = 1,
    loader_batches: Annotated[int, typer.Option(min=2, help="Batches to time the loader.")] = 8,
    peak_n: Annotated[int, typer.Option(min=64, help="Matmul side for the peak.")] = 2048,
) -> None:
    """Time N training steps of a config against a plain reference SimSiam step, interleaved."""
    from siamlab.bench.runner import run_bench

    try:
        plan = read_study(study) if study else StudyFile(name="bench")
        spec = expand_study(plan, profile, set_, [only] if only else None)[0]
        report = run_bench(spec, steps, block, warmup, loader_batches, peak_n)
    except SiamlabError as exc:
        raise fail(exc) from None
    console.print(
        f"[bold]{spec.study}/{spec.variant}[/] profile={spec.profile} "
        f"batch={spec.config.train.batch_size} steps={steps} (blocks of {block})",
        highlight=False,
    )
    print_report(report)
