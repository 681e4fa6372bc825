"""The monitor: runs the hooks on training's callbacks and sends their values to sinks."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.sinks import Sink
from siamlab.train.loop import EpochView, StepView


@runtime_checkable
class Summary(Protocol):
    """Derives values from what all hooks returned for a step or an epoch (the verdict)."""

    def summarise(self, scope: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Extra values for ``scope`` ("step" or "epoch") given the hooks' ``values``."""
        ...


class Monitor:
    """Implements the trainer's Callbacks for diagnostics.

    Hooks (objects with ``on_step``/``on_epoch``, see :class:`~siamlab.diagnostics.hooks.Hook`)
    run in order; then every :class:`Summary` among them sees the merged values and may
    add its own (the :class:`~siamlab.diagnostics.verdict.VerdictJudge` adds the verdict).

    Args:
        hooks: the diagnostics to run (hooks and summaries).
        sinks: where their values go.
        make_probes: builds a fresh ProbeCache for the model at an epoch's end.
    """

    def __init__(
        self,
        hooks: Sequence[Any],
        sinks: Sequence[Sink],
        make_probes: Callable[[EpochView], ProbeCache],
    ) -> None:
        self.hooks = [h for h in hooks if hasattr(h, "on_step")]
        self.summaries = [h for h in hooks if isinstance(h, Summary)]
        self.sinks, self.make_probes = list(sinks), make_probes
        self.verdict = ""

    def _emit(self, scope: str, index: int, values: dict[str, Any]) -> None:
        if values:
            for sink in self.sinks:
                sink.write(scope, index, values)

    def on_step_end(self, view: StepView) -> None:
        """Run every hook's step part."""
        values: dict[str, Any] = {}
        for hook in self.hooks:
            values.update(hook.on_step(view))
        for summary in self.summaries:
            values.update(summary.summarise("step", values))
        self._emit("step", view.step, values)

    def on_epoch_end(self, view: EpochView) -> None:
        """Run every hook's epoch part, sharing one set of probe embeddings."""
        probes = self.make_probes(view)
        values: dict[str, Any] = {}
        for hook in self.hooks:
            values.update(hook.on_epoch(view, probes))
        for summary in self.summaries:
            values.update(summary.summarise("epoch", values))
        self.verdict = str(values.get("verdict", self.verdict))
        self._emit("epoch", view.epoch, values)

    def state_dict(self) -> dict[str, Any]:
        """Within-epoch state of the stateful hooks, for a checkpoint taken mid-epoch.

        Keys are ``"<position>:<class name>"`` so a state is only restored into the same hook.
        """
        return {
            f"{i}:{type(h).__name__}": h.state_dict()
            for i, h in enumerate([*self.hooks, *self.summaries])
            if hasattr(h, "state_dict")
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (unknown keys are ignored)."""
        for i, h in enumerate([*self.hooks, *self.summaries]):
            key = f"{i}:{type(h).__name__}"
            if key in state and hasattr(h, "load_state_dict"):
                h.load_state_dict(state[key])

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()
