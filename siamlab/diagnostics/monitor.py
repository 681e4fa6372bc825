"""The monitor: runs the hooks on training's callbacks and sends their values to sinks."""

from collections.abc import Callable, Sequence
from typing import Any

from siamlab.diagnostics.hooks import Hook
from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.sinks import Sink
from siamlab.train.loop import EpochView, StepView


class Monitor:
    """Implements the trainer's Callbacks for diagnostics.

    Args:
        hooks: the diagnostics to run.
        sinks: where their values go.
        make_probes: builds a fresh ProbeCache for the model at an epoch's end.
    """

    def __init__(
        self,
        hooks: Sequence[Hook],
        sinks: Sequence[Sink],
        make_probes: Callable[[EpochView], ProbeCache],
    ) -> None:
        self.hooks, self.sinks, self.make_probes = list(hooks), list(sinks), make_probes

    def _emit(self, scope: str, index: int, values: dict[str, Any]) -> None:
        if values:
            for sink in self.sinks:
                sink.write(scope, index, values)

    def on_step_end(self, view: StepView) -> None:
        """Run every hook's step part."""
        values: dict[str, Any] = {}
        for hook in self.hooks:
            values.update(hook.on_step(view))
        self._emit("step", view.step, values)

    def on_epoch_end(self, view: EpochView) -> None:
        """Run every hook's epoch part, sharing one set of probe embeddings."""
        probes = self.make_probes(view)
        values: dict[str, Any] = {}
        for hook in self.hooks:
            values.update(hook.on_epoch(view, probes))
        self._emit("epoch", view.epoch, values)

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()
