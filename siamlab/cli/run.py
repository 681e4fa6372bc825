"""``siamlab run`` and ``siamlab validate``: execute or check a study file."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from siamlab.cli.app import app, console, err, fail
from siamlab.config.seeds import parse_seeds
from siamlab.config.study import RunSpec, expand_study, read_study
from siamlab.errors import SiamlabError
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


def _report(reports: "list[StudyReport]") -> None:
    table = Table(title="study summary")
    for col in (
        "run",
        "status",
        "final loss",
        "z-std*sqrt(d) eval",
        "z-std*sqrt(d) train",
        "kNN top-1",
    ):
        table.add_column(col)
    for r in reports:
        s = r.summary
        table.add_row(
            r.name,
            r.status,
            *(
                f"{s[k]:.3f}" if k in s else "-"
                for k in ("epoch_loss", "z_std_eval*sqrt(d)", "z_std_train*sqrt(d)", "knn_top1")
            ),
        )
    console.print(table)
    for r in reports:
        if r.error:
            err.print(f"[red]{r.name} failed:[/] {r.error}", highlight=False)


@app.command()
def run(
    study: Path,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    only: OnlyOpt = None,
    seeds: SeedsOpt = None,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Run every variant x seed of STUDY; re-running resumes and skips finished runs.

    Exit status: 0 all finished (or diverged: see the table), 1 a run failed
    unexpectedly, 2 bad input (config, study file, data, results folder), 75 stopped
    by SIGTERM/SIGINT (re-run to resume).
    """
    from siamlab.study.execute import run_study

    runs = _expand(study, profile, set_, only, seeds)
    console.print(f"{len(runs)} run(s) of {runs[0].study!r} at profile {runs[0].profile!r}")
    try:
        reports = run_study(
            runs, progress=progress, log=lambda msg: console.print(msg, highlight=False)
        )
    except SiamlabError as exc:  # e.g. the study folder is locked or not writable
        raise fail(exc) from None
    if int(os.environ.get("RANK", "0")) == 0:
        _report(reports)
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        raise typer.Exit(2 if all(r.user_error for r in failed) else 1)
    if any(r.status == "preempted" for r in reports):
        raise typer.Exit(EXIT_PREEMPTED)
