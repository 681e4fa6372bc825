"""``siamlab run`` and ``siamlab validate``: execute or check a study file."""

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from siamlab.cli.app import app, console, err, fail
from siamlab.cli.tables import fitted_table, least_width
from siamlab.config.seeds import parse_seeds
from siamlab.config.study import RunSpec, expand_study, read_study
from siamlab.errors import ConfigError, SiamlabError
from siamlab.preemption import EXIT_PREEMPTED
from siamlab.provenance import config_yaml

if TYPE_CHECKING:  # torch: loaded when a run starts
    from siamlab.study.execute import StudyReport

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", "-p", help="Scale: quick (default), cifar10, imagenet.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set optim.base_lr=0.1."),
]
OnlyOpt = Annotated[
    list[str] | None, typer.Option("--only", help="Run only this variant (repeatable).")
]
SeedsOpt = Annotated[
    str | None,
    typer.Option("--seeds", help="Replace the study's seeds, e.g. --seeds 0,1,2 or 0-2."),
]


def _expand(
    study: Path,
    profile: str | None,
    sets: list[str] | None,
    only: list[str] | None,
    seeds: str | None = None,
) -> list[RunSpec]:
    try:
        chosen = parse_seeds(seeds) if seeds is not None else None
        return expand_study(read_study(study), profile, sets, only, chosen)
    except SiamlabError as exc:
        raise fail(exc) from None


@app.command()
def validate(
    study: Path,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    only: OnlyOpt = None,
    seeds: SeedsOpt = None,
    full: bool = typer.Option(False, help="Print every config."),
) -> None:
    """Check a study file and print its runs and their resolved configs."""
    runs = _expand(study, profile, set_, only, seeds)
    for spec in runs:
        console.print(
            f"[bold]{spec.variant}/seed{spec.seed}[/]  profile={spec.profile}  "
            f"-> {spec.directory()}",
            highlight=False,
        )
        if full or spec.seed == runs[0].seed:
            console.print(config_yaml(spec.config), highlight=False)
    console.print(f"{len(runs)} run(s) OK")


SUMMARY = {  # report key -> header; the train-mode std goes first where space is short
    "epoch_loss": "loss",
    "z_std_eval*sqrt(d)": "std·√d eval",
    "z_std_train*sqrt(d)": "std·√d train",
    "knn_top1": "kNN top-1",
}


def summary_rows(reports: "list[StudyReport]", keys: list[str]) -> list[list[str]]:
    """Per run: name, status, the ``keys`` numbers, its run verdict (``?`` provisional), onset."""
    return [
        [
            r.name,
            r.status,
            *(f"{r.summary[k]:.3f}" if k in r.summary else "-" for k in keys),
            (r.verdict + "?" * r.provisional) if r.verdict else "-",
            f"ep {r.onset_epoch}" if r.verdict and r.onset_epoch else "-",
        ]
        for r in reports
    ]


def _counted(values: Counter) -> str:
    """``bf16+CL (5 runs), fp32 (1 run)``: each value with its number of runs."""
    return ", ".join(f"{v} ({n} run{'s' * (n > 1)})" for v, n in values.items())


def _report(reports: "list[StudyReport]") -> None:
    keys = list(SUMMARY)
    headers = ["run", "status", *(SUMMARY[k] for k in keys), "verdict", "onset"]
    rows = summary_rows(reports, keys)
    if least_width(headers, rows) > console.width:  # the train-mode std resists collapse
        keys.remove("z_std_train*sqrt(d)")
        headers.remove(SUMMARY["z_std_train*sqrt(d)"])
        rows = summary_rows(reports, keys)
    table = fitted_table(
        headers,
        rows,
        console.width,
        title="study summary (std of z/‖z‖; run verdict, ? = provisional)",
        right=[SUMMARY[k] for k in keys],
    )
    console.print(table)
    ran = Counter(r.precision for r in reports if r.precision)
    if ran:
        exact = set(ran) == {"fp32"}  # not fp32+CL: channels_last kernels round otherwise
        parts = [f"precision: {_counted(ran)}" + ", the exact path" * exact]
        threads = Counter(r.threads for r in reports if r.threads)
        if threads:
            parts.append(f"CPU threads: {_counted(threads)}")
        if any(p.startswith("bf16") for p in ran):
            parts.append("bf16 = autocast of the training forward, CL = channels_last")
        if not exact:  # channels_last off too where a config set it (auto follows fp32)
            cl = " --set train.channels_last=false" * ("fp32+CL" in ran)
            # into another folder: these runs' results would refuse the changed config
            parts.append(
                f"the exact path: --set train.precision=fp32{cl} --set output.root=NEW_FOLDER"
            )
        console.print("; ".join(parts), highlight=False)
    for r in reports:
        if r.error:
            err.print(f"[red]{r.name} failed:[/] {r.error}", highlight=False)


LauncherOpt = Annotated[
    str,
    typer.Option(
        "--launcher",
        help="inline: this process, runs one after another (default); local: --jobs N "
        "runs at once on this machine; slurm: one job array, one task per run.",
    ),
]


@app.command()
def run(
    study: Path,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    only: OnlyOpt = None,
    seeds: SeedsOpt = None,
    progress: bool = typer.Option(True, help="Show a progress bar."),
    launcher: LauncherOpt = "inline",
    launcher_config: Annotated[
        Path | None,
        typer.Option("--launcher-config", help="cluster.yaml: Slurm resources (--launcher slurm)."),
    ] = None,
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="Runs at once (--launcher local)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what --launcher slurm would submit; submit nothing."
    ),
    resume_stopped: bool = typer.Option(
        False,
        "--resume-stopped",
        help="Also resume the runs stopped on collapse (status stopped_collapsed, see "
        "train.stop_on_collapse) from their checkpoint and train them to their last "
        "epoch; without it they count as done.",
    ),
) -> None:
    """Run every variant x seed of STUDY; re-running resumes and skips finished runs.

    Re-running over results of another config (a changed --set or study file) is
    refused before anything trains, naming each run and key (exit status 2), and so
    is re-running on other images than the runs trained on (their data fingerprint).

    A run that train.stop_on_collapse stopped (stopped_collapsed) is skipped like a
    finished one unless --resume-stopped.

    Exit status: 0 all finished (or stopped_collapsed, or diverged: see the table; with
    --launcher slurm: submitted), 1 a run failed unexpectedly, 2 bad input (config,
    study or cluster file, data, results folder, submitit missing), 75 stopped by
    SIGTERM/SIGINT (re-run to resume).
    """
    runs = _expand(study, profile, set_, only, seeds)
    console.print(f"{len(runs)} run(s) of {runs[0].study!r} at profile {runs[0].profile!r}")
    try:
        reports = _launch(runs, launcher, launcher_config, jobs, dry_run, progress, resume_stopped)
    except SiamlabError as exc:  # e.g. a bad cluster file, submitit missing
        raise fail(exc) from None
    if not reports:  # submitted to Slurm, or nothing left to run (said above)
        return
    if int(os.environ.get("RANK", "0")) == 0:
        _report(reports)
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        raise typer.Exit(2 if all(r.user_error for r in failed) else 1)
    if any(r.status == "preempted" for r in reports):
        raise typer.Exit(EXIT_PREEMPTED)


def _launch(
    runs: list[RunSpec],
    launcher: str,
    cluster_file: Path | None,
    jobs: int,
    dry_run: bool,
    progress: bool,
    resume_stopped: bool = False,
) -> "list[StudyReport] | None":
    """Train (inline, local) or submit (slurm) the runs; None when nothing is to report."""
    say = lambda msg: console.print(msg, highlight=False)  # noqa: E731
    if launcher not in ("inline", "local", "slurm"):
        raise ConfigError(f"unknown --launcher {launcher!r}; use inline, local or slurm")
    if launcher != "slurm" and (dry_run or cluster_file):
        raise ConfigError("--dry-run and --launcher-config go with --launcher slurm")
    if launcher == "inline":
        from siamlab.study.execute import run_study  # torch: loaded when a run starts

        return run_study(runs, progress=progress, log=say, resume_stopped=resume_stopped)
    if launcher == "local":
        import torch

        from siamlab.launch.local import run_local

        return run_local(runs, jobs, torch.cuda.device_count(), say, resume_stopped)
    from siamlab.launch.config import read_cluster
    from siamlab.launch.slurm import describe, submit_slurm

    sub = submit_slurm(runs, read_cluster(cluster_file), dry_run, say, resume_stopped)
    for line in describe(sub):
        say(line)
    if dry_run:
        say("dry run: nothing submitted")
    elif sub.job_ids:
        say(f"submitted; follow with: siamlab status {sub.logs.parent}")
    return None
