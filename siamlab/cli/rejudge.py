"""``siamlab rejudge``: every run's verdict judged again from its results, nothing written."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from siamlab.cli.app import app, console, fail
from siamlab.cli.compare import evidence_lines, styled_verdicts
from siamlab.cli.tables import fitted_table
from siamlab.errors import ConfigError, SiamlabError

if TYPE_CHECKING:  # xarray: loaded when the command runs
    from siamlab.diagnostics.verdict_rule import RunVerdict
    from siamlab.results.rejudge import Rejudged

PREFIX = "diagnostics.verdict."


def threshold_overrides(exprs: list[str]) -> dict[str, Any]:
    """``diagnostics.verdict.KEY=VALUE`` expressions -> {KEY: value}.

    Raises:
        ConfigError: an expression outside ``diagnostics.verdict`` (training keys cannot
            change what was trained) or without ``=``.
    """
    from siamlab.config.overrides import parse_set

    out: dict[str, Any] = {}
    for expr in exprs:
        key = expr.partition("=")[0].strip()
        if not key.startswith(PREFIX) or key.count(".") != 2:
            raise ConfigError(
                f"--set {expr!r}: only the verdict's thresholds can be set when re-judging "
                f"({PREFIX}KEY=VALUE, e.g. {PREFIX}partial_residual_norm=0.7); the rest "
                "of the config trained the run"
            )
        out[key.removeprefix(PREFIX)] = parse_set(expr)["diagnostics"]["verdict"][
            key.removeprefix(PREFIX)
        ]
    return out


def _cell(v: "RunVerdict") -> str:
    """``partial_collapse ep 26`` (``?``: provisional; ``-``: no verdict)."""
    mark = "?" if v.verdict and v.provisional else ""
    onset = f" ep {v.onset_epoch}" if v.onset_epoch else ""
    return f"{v.verdict}{mark}{onset}" if v.verdict else "-"


def _rows(found: "list[Rejudged]", with_study: bool, with_status: bool) -> list[list[str]]:
    return [
        [
            f"{r.study}/{r.variant}/seed{r.seed}" if with_study else f"{r.variant}/seed{r.seed}",
            *([r.status or "-"] if with_status else []),
            _cell(r.recorded),
            _cell(r.now),
            "yes" if r.changed else "",
        ]
        for r in found
    ]


@app.command()
def rejudge(
    results: Annotated[list[Path], typer.Argument(help="Study folders or a results root.")],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help=f"A threshold: {PREFIX}KEY=VALUE."),
    ] = None,
    thresholds: Annotated[
        str, typer.Option(help="current: today's defaults; run: each run's recorded ones.")
    ] = "current",
) -> None:
    """Judge every run again from its metrics.nc: today's rule or other thresholds.

    The verdict judge records each input of the rule next to its output (per evaluated
    epoch: the judged loss, its start, jitter and noise, the centred geometry of z), so a
    run is judged again without training. --thresholds current (the default) applies the
    thresholds calibrated today (README, How often the verdict is right) with the rule's
    code of today; --thresholds run each run's own recorded thresholds (a change there
    means the rule's code changed); --set moves one threshold to see how close a verdict
    is to it. The table gives each run's recorded verdict and onset beside the new ones (and its
    status where a run did not finish);
    the evidence of every changed run is printed below. Nothing is written. Exit status
    0; 2 for bad input (a folder without runs, an unknown threshold, a key outside
    diagnostics.verdict).
    """
    from siamlab.diagnostics.config import VerdictConfig
    from siamlab.results.rejudge import rejudge as judge_again
    from siamlab.results.rejudge import thresholds as check_thresholds
    from siamlab.results.runinfo import load_studies

    try:
        if thresholds not in ("current", "run"):
            raise ConfigError(f"--thresholds must be current or run, got {thresholds!r}")
        overrides = threshold_overrides(sets or [])
        check_thresholds(VerdictConfig(), overrides)  # before any file is read
        folders = [Path(ds.attrs["results_dir"]) for ds in load_studies(results).values()]
        found = judge_again(folders, overrides, "run" if thresholds == "run" else "current")
    except SiamlabError as exc:
        raise fail(exc) from None
    studies = sorted({r.study for r in found})
    with_status = any(r.status != "finished" for r in found)
    text = _rows(found, len(studies) > 1, with_status)
    headers = ["run", *(["status"] if with_status else []), "recorded", "now", "changed"]
    verdicts = {headers.index("recorded"), headers.index("now")}
    markup = [
        [styled_verdicts(c) if i in verdicts else escape(c) for i, c in enumerate(row)]
        for row in text
    ]
    which = "each run's recorded" if thresholds == "run" else "today's default"
    given = ", ".join(f"{k}={v}" for k, v in overrides.items())
    where = studies[0] if len(studies) == 1 else f"{len(studies)} studies"
    title = f"{where}: verdicts judged again ({which} thresholds{', ' + given if given else ''})"
    table = fitted_table(headers, text, console.width, title, free=["run"], markup=markup)
    console.print(table)
    changed = [r for r in found if r.changed]
    console.print(f"{len(changed)} of {len(found)} run verdicts changed; nothing was written.")
    for r in changed:
        lines = [f"{r.study}/{r.variant}/seed{r.seed}: {r.now.evidence or '-'}"]
        for line in evidence_lines(lines, console.width):
            console.print(escape(line), highlight=False)
