"""The monitor of a run: its diagnostics hooks and, on rank 0, its sinks.

Under torchrun the monitor sees the global batch: every rank's z/p/h, gathered.
"""

from dataclasses import replace
from typing import Any, Protocol

import torch

from siamlab.config.study import RunSpec
from siamlab.data.build import DataBundle
from siamlab.diagnostics.eta_stats import EtaStatsHook
from siamlab.diagnostics.hooks import create_hooks
from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.probe import ProbeCache, fixed_subset
from siamlab.diagnostics.sinks import ProgressSink, RecorderSink, Sink, TensorBoardSink
from siamlab.models.siamese import SiameseOutput
from siamlab.results.recorder import Recorder
from siamlab.train.distributed import DistInfo, all_gather_cat
from siamlab.train.loop import EpochView, StepView


class RunMonitor(Protocol):
    """What a run asks of its monitor: the callbacks, its hooks' state, closing its sinks."""

    def on_step_end(self, view: StepView) -> None:
        """After every SGD step."""

    def on_epoch_end(self, view: EpochView) -> None:
        """After every epoch."""

    def state_dict(self) -> dict[str, Any]:
        """The hooks' within-epoch state."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def close(self) -> None:
        """Close the sinks."""


class GlobalBatchMonitor:
    """Hands ``monitor`` the global batch: every rank's z/p/h, gathered (torchrun only)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def on_step_end(self, view: StepView) -> None:
        """Gather the step's outputs from every rank, then run the monitor."""
        gathered = (None if t is None else all_gather_cat(t.cpu()) for t in view.output)
        output = SiameseOutput._make(gathered)
        self.monitor.on_step_end(replace(view, output=output))

    def on_epoch_end(self, view: EpochView) -> None:
        """Run the monitor (its probe passes are sharded over the ranks)."""
        self.monitor.on_epoch_end(view)

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state."""
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the monitor's state."""
        self.monitor.load_state_dict(state)

    def close(self) -> None:
        """Close the monitor's sinks."""
        self.monitor.close()


def build_monitor(
    spec: RunSpec,
    recorder: Recorder,
    data: DataBundle,
    device: torch.device,
    dist: DistInfo,
    steps: tuple[int, int],
    with_eta: bool,
    progress: bool,
) -> RunMonitor:
    """Hooks with the run's diagnostics; sinks on rank 0 only.

    Args:
        spec: the run.
        recorder: where the results sink puts values.
        data: the probe sets come from its evaluation splits.
        device: where probe embeddings are computed.
        dist: this process's place in the job.
        steps: (first step, last step) of this run's training (TensorBoard, progress).
        with_eta: add the eta statistics hook.
        progress: show a progress bar.
    """
    cfg, diag = spec.config, spec.config.diagnostics
    start_step, total = steps
    probe_sets = {
        "bank": fixed_subset(data.train_eval, diag.bank_size),
        "test": data.test_eval,
        "probe": fixed_subset(data.train_eval, diag.probe_size),
    }
    sinks: list[Sink] = []
    if dist.is_main:
        sinks.append(RecorderSink(recorder))
        if cfg.output.tensorboard:
            sinks.append(TensorBoardSink(spec.directory() / "tb", purge_step=start_step + 1))
        if progress:
            desc = f"{spec.variant}/seed{spec.seed}"
            sinks.append(ProgressSink(total, start_step, cfg.model.dim, desc))
    hooks = create_hooks(diag, data.num_classes, cfg.train.epochs)
    if with_eta:
        hooks.append(EtaStatsHook())
    monitor = Monitor(
        hooks, sinks, lambda view: ProbeCache(view.model, probe_sets, device, batch_size=256)
    )
    return GlobalBatchMonitor(monitor) if dist.world_size > 1 else monitor
