"""``siamlab eval linear|knn``: measure a pre-trained backbone as the paper does, and record it.

CHECKPOINT is a siamlab run folder, its ``checkpoints/last.pt``, a checkpoint of the
authors' reference implementation, or a plain torchvision ResNet state dict. ``--study
RESULTS`` evaluates every finished run of a study instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from siamlab.cli.app import app, console, err, fail
from siamlab.errors import SiamlabError

if TYPE_CHECKING:  # the evaluation modules import torch: loaded when a command runs
    from siamlab.evaluation.runner import EvalOutcome, EvalTarget

eval_app = typer.Typer(
    help="Evaluate pre-trained backbones: linear probe and weighted kNN (paper protocols).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

CheckpointArg = Annotated[
    Path | None,
    typer.Argument(help="Run folder, siamlab last.pt, reference .pth.tar or torchvision .pth."),
]
StudyOpt = Annotated[
    Path | None, typer.Option("--study", help="Evaluate every finished run of this study folder.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override the config, e.g. --set data.root=../shared/data."),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(help="Base config for checkpoints that carry none (default imagenet)."),
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the config's).")]
OutputOpt = Annotated[
    Path | None,
    typer.Option(help="Record results in DIR/metrics.nc when the checkpoint belongs to no run."),
]
BatchOpt = Annotated[int, typer.Option("--feature-batch", help="Images per forward pass.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]

Measure = Callable[["EvalTarget"], "EvalOutcome"]


def _targets(checkpoint: Path | None, study: Path | None) -> list[Path]:
    from siamlab.results.store import open_run, run_dirs

    if (checkpoint is None) == (study is None):
        raise SiamlabError("give either a CHECKPOINT or --study RESULTS (one of the two)")
    if checkpoint is not None:
        return [checkpoint]
    assert study is not None
    dirs = run_dirs(study)
    if not dirs:
        raise SiamlabError(f"no runs under {study} (expected <variant>/seed<k>/metrics.nc)")
    finished = []
    for d in dirs:
        status = open_run(d).attrs.get("status", "unknown")
        if status == "finished":
            finished.append(d)
        else:
            err.print(f"[yellow]skipped[/] {d}: status {status!r} (only finished runs)")
    if not finished:
        raise SiamlabError(f"no finished runs under {study}")
    return finished


def _evaluate(
    kind: str,
    checkpoint: Path | None,
    study: Path | None,
    measure: Measure,
    profile: str | None,
    sets: list[str] | None,
    device: str | None,
    output: Path | None,
) -> None:
    from siamlab.evaluation.features import BackboneChangedError
    from siamlab.evaluation.runner import prepare

    try:
        targets = _targets(checkpoint, study)
    except SiamlabError as exc:
        raise fail(exc) from None
    table = Table(title=f"{kind} evaluation")
    for col in ("checkpoint", "format", "top-1", "top-5", "recorded in"):
        table.add_column(col, overflow="fold")
    failed = False
    for path in targets:
        try:
            target = prepare(path, profile, sets, device, output)
            out = measure(target)
        except BackboneChangedError as exc:
            err.print(f"[bold red]error:[/] {path}: {exc}", highlight=False)
            raise typer.Exit(1) from None
        except SiamlabError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            if len(targets) == 1:
                raise typer.Exit(2) from None
            failed = True
            continue
        prefix = "eval_linear" if kind == "linear" else "eval_knn"
        top1, top5 = out.values[f"{prefix}_top1"], out.values[f"{prefix}_top5"]
        written = str(out.written) if out.written else "-"
        table.add_row(str(path), target.checkpoint.format, f"{top1:.4f}", f"{top5:.4f}", written)
        console.print(f"{path}: {out.attrs['recipe']}", highlight=False)
        for note in out.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(table)
    if failed:
        raise typer.Exit(1)


@eval_app.command("linear")
def linear(
    checkpoint: CheckpointArg = None,
    study: StudyOpt = None,
    path: Annotated[
        str, typer.Option(help="fast: cached eval-transform features; augmented: paper.")
    ] = "fast",
    optimizer: Annotated[str, typer.Option(help="lars (paper) or sgd.")] = "lars",
    base_lr: Annotated[
        float, typer.Option(help="lr = base_lr x batch/256; paper 0.02 (LARS), reference 0.1.")
    ] = 0.02,
    batch_size: Annotated[int, typer.Option(help="Probe batch (paper 4096).")] = 4096,
    epochs: Annotated[int, typer.Option(help="Probe epochs (paper 90).")] = 90,
    momentum: Annotated[float, typer.Option()] = 0.9,
    weight_decay: Annotated[float, typer.Option()] = 0.0,
    seed: Annotated[int, typer.Option(help="Seeds fc init, batch order, crops.")] = 0,
    standardize: Annotated[
        bool, typer.Option(help="Fast path: standardise features first (not in the paper).")
    ] = False,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    output: OutputOpt = None,
    feature_batch: BatchOpt = 256,
    progress: ProgressOpt = True,
) -> None:
    """Linear probe on frozen pool5 features (paper: LARS, 0.02 x B/256, 90 ep, cosine)."""
    from siamlab.evaluation.linear_probe import ProbeRecipe
    from siamlab.evaluation.runner import run_linear

    try:
        recipe = ProbeRecipe(
            path=path,  # type: ignore[arg-type]
            optimizer=optimizer,  # type: ignore[arg-type]
            base_lr=base_lr,
            batch_size=batch_size,
            epochs=epochs,
            momentum=momentum,
            weight_decay=weight_decay,
            seed=seed,
            standardize=standardize,
        )
    except SiamlabError as exc:
        raise fail(exc) from None

    def measure(target: EvalTarget) -> EvalOutcome:
        return run_linear(target, recipe, feature_batch, progress)

    _evaluate("linear", checkpoint, study, measure, profile, set_, device, output)


@eval_app.command("knn")
def knn(
    checkpoint: CheckpointArg = None,
    study: StudyOpt = None,
    k: Annotated[
        int | None, typer.Option(help="Neighbours (default: the run's monitor k).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Vote temperature T (default: the run's monitor T).")
    ] = None,
    bank: Annotated[str, typer.Option(help="Bank split: train or test.")] = "train",
    queries: Annotated[str, typer.Option(help="Query split: test or train.")] = "test",
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    output: OutputOpt = None,
    feature_batch: BatchOpt = 256,
    progress: ProgressOpt = True,
) -> None:
    """Weighted kNN (InstDisc, as the training monitor) on frozen backbone features."""
    from siamlab.evaluation.knn_eval import KnnRecipe
    from siamlab.evaluation.runner import run_knn

    try:  # check the options before any work
        KnnRecipe(1 if k is None else k, 1.0 if temperature is None else temperature, bank, queries)
    except SiamlabError as exc:
        raise fail(exc) from None

    def measure(target: EvalTarget) -> EvalOutcome:
        diag = target.config.diagnostics
        recipe = KnnRecipe(
            k if k is not None else diag.knn_k,
            temperature if temperature is not None else diag.knn_temperature,
            bank,
            queries,
        )
        return run_knn(target, recipe, feature_batch, progress)

    _evaluate("kNN", checkpoint, study, measure, profile, set_, device, output)
