"""``siamlab status``: every run of a study, where it stands (works with or without Slurm)."""

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from siamlab.cli.app import app, console, fail
from siamlab.cli.tables import fitted_table
from siamlab.errors import SiamlabError

if TYPE_CHECKING:  # xarray: loaded when the command runs
    from siamlab.study.status import RunRow

STYLE = {
    "finished": "green",
    "stopped_collapsed": "magenta",
    "running": "cyan",
    "failed": "red",
    "diverged": "red",
}


def status_table(rows: "list[RunRow]", title: str, width: int) -> Table:
    """The runs as a table whose names and states never wrap (log paths fold)."""
    text = [
        [
            r.name,
            r.state,
            f"{r.step}/{r.total}" if r.total else str(r.step),
            r.verdict or "-",
            r.job or "-",
            r.log or "-",
        ]
        for r in rows
    ]
    markup = [
        [
            f"[{STYLE.get(r.state, 'yellow')}]{t[1]}[/]" if i == 1 else escape(c)
            for i, c in enumerate(t)
        ]
        for r, t in zip(rows, text, strict=True)
    ]
    headers = ("run", "state", "step", "verdict", "job", "log")
    return fitted_table(headers, text, width, title, right=["step"], free=["log"], markup=markup)


def _table(study_dir: Path) -> tuple[Table, bool]:
    """The status table and whether any run is still queued or running."""
    from siamlab.study.status import study_status

    try:
        rows = study_status(study_dir)
    except SiamlabError as exc:
        raise fail(exc) from None
    counts = {s: sum(r.state == s for r in rows) for s in dict.fromkeys(r.state for r in rows)}
    title = f"{study_dir}: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs yet")
    return status_table(rows, title, console.width), any(
        r.state in ("queued", "running") for r in rows
    )


@app.command()
def status(
    study_dir: Path,
    watch: bool = typer.Option(False, help="Refresh until no run is queued or running."),
    interval: float = typer.Option(5.0, min=0.1, help="Seconds between refreshes with --watch."),
) -> None:
    """Show every run of a study: state, step of total, verdict, job id or pid, log.

    States: queued, running, finished, stopped_collapsed (train.stop_on_collapse ended
    it at its collapse: siamlab run --resume-stopped trains it on), failed, diverged,
    preempted, stopped (its process ended without finishing: re-run the study to
    resume it). The verdict is the run's (``?``: provisional, no state has held long
    enough yet; ``siamlab compare`` gives its onset and evidence). Exit status 0.
    """
    table, active = _table(study_dir)
    if not watch:
        console.print(table)
        return
    from rich.live import Live

    try:
        with Live(table, console=console, auto_refresh=False) as live:
            while active:
                time.sleep(interval)
                table, active = _table(study_dir)
                live.update(table, refresh=True)
    except KeyboardInterrupt:
        pass
