"""Assembles a run's diagnostics: hooks by name, probe sets, sinks, the monitor.

Used by :func:`siamlab.run.assemble.build_run` and the bench (:mod:`siamlab.bench.runner`). The
hooks reach the model only through :class:`~siamlab.diagnostics.probe.EvalFeatures`.
"""

from pathlib import Path

from torch.utils.data import Dataset

from siamlab.config.study import RunSpec
from siamlab.data.build import DataBundle
from siamlab.diagnostics.build import default_hooks
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.hooks import HookContext
from siamlab.diagnostics.monitor import Monitor, Sink
from siamlab.diagnostics.probe import EvalFeatures, ProbeCache, fixed_subset
from siamlab.models.siamese import SiameseOutput
from siamlab.reporting.progress import ProgressSink
from siamlab.reporting.recorder_sink import RecorderSink
from siamlab.reporting.tensorboard import TensorBoardSink
from siamlab.results.recorder import Recorder
from siamlab.train.distributed import DistInfo, all_gather_cat
from siamlab.train.length import RunLength
from siamlab.train.views import StepView

PROBE_BATCH = 256  # batch of the eval-mode passes over the probe sets


def global_batch(view: StepView) -> StepView:
    """``view`` with every process's h/z/p (and targets) gathered (torchrun only)."""
    gathered = [None if t is None else all_gather_cat(t.cpu()) for t in view.output]
    output = SiameseOutput(*gathered)  # type: ignore[arg-type]
    return StepView(
        view.step,
        view.epoch,
        view.loss,
        view.lr,
        output,
        view.batch_size,
        view.gradients,  # all-reduced by DDP: already the global batch's
        view.target_stats,
    )


def probe_sets(train: Dataset, test: Dataset, diag: DiagnosticsConfig) -> dict[str, Dataset]:
    """The probe sets of the epoch hooks (see :meth:`ProbeCache.get`).

    Args:
        train: the training split under the test transform.
        test: the test split.
        diag: ``bank_size`` and ``probe_size``.
    """
    return {
        "bank": fixed_subset(train, diag.bank_size),
        "test": test,
        "probe": fixed_subset(train, diag.probe_size),
    }


def build_monitor(
    spec: RunSpec,
    features: EvalFeatures,
    data: DataBundle,
    dist: DistInfo,
    run_dir: Path,
    recorder: Recorder,
    length: RunLength,
    start_step: int,
    progress: bool,
    has_targets: bool,
) -> Monitor:
    """The monitor of a run: the configured hooks; sinks on rank 0 only.

    Args:
        spec: the run (its config's ``diagnostics``, ``output``, ``model.dim``).
        features: the model's eval-mode features.
        data: the run's datasets (probe sets, number of classes).
        dist: this process's place in the job (torchrun gathers the global batch).
        run_dir: the run's folder (TensorBoard under ``tb/``).
        recorder: where results go.
        length: steps per epoch, planned epochs, all steps (the run's last epoch: the
            one ``train.max_steps`` may cut).
        start_step: the step the run starts or resumes from.
        progress: show a progress bar.
        has_targets: the run trains towards eta targets (enables ``eta_stats``).
    """
    cfg, diag = spec.config, spec.config.diagnostics
    sets = probe_sets(data.train_eval, data.test_eval, diag)
    sinks: list[Sink] = []
    if dist.is_main:
        sinks.append(RecorderSink(recorder))
        if cfg.output.tensorboard:
            sinks.append(TensorBoardSink(run_dir / "tb", purge_step=start_step + 1))
        if progress:
            desc = f"{spec.variant}/seed{spec.seed}"
            sinks.append(ProgressSink(length.total_steps, start_step, cfg.model.dim, desc))
    ctx = HookContext(
        diag,
        length.epochs,
        data.num_classes,
        has_targets,
        features.predictor_has_parameters(),
        length.last_epoch,
    )
    return Monitor(
        default_hooks(ctx),
        sinks,
        lambda: ProbeCache(features, sets, PROBE_BATCH),
        global_batch if dist.world_size > 1 else None,
    )
