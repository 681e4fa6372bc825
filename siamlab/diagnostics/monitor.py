"""The monitor: runs the due hooks on training's callbacks and sends their values to sinks.

The monitor owns the schedules: a step hook runs when ``step % step_every == 0``, an
epoch hook when :func:`~siamlab.diagnostics.config.epoch_due` says so (every
``epoch_every`` epochs plus the first and the last). Hooks never check schedules
themselves (contract: :mod:`siamlab.diagnostics.hooks`).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from siamlab.diagnostics.config import epoch_due
from siamlab.diagnostics.hooks import EpochHook, Hook, StepHook, Summary, Value, Values
from siamlab.diagnostics.probe import ProbeCache
from siamlab.train.views import EpochView, StepView


class Sink(Protocol):
    """Receives the values of one step or one epoch (implementations: siamlab.reporting)."""

    def write(self, scope: str, index: int, values: Mapping[str, Value]) -> None:
        """``scope`` is "step" or "epoch"; ``index`` the 1-based step or epoch."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


def stage_sets(hooks: Sequence[Hook]) -> set[str]:
    """The probe sets whose backbone stage outputs ``hooks`` read (their ``stage_probe``)."""
    named = (getattr(h, "stage_probe", None) for h in hooks)
    return {str(name) for name in named if name}


class Monitor:
    """Implements the trainer's Callbacks for diagnostics.

    Due step/epoch hooks run in order; then every :class:`Summary` sees the merged values
    and may add its own (the :class:`~siamlab.diagnostics.verdict.VerdictJudge` adds the
    verdict).

    Args:
        hooks: the diagnostics to run (step hooks, epoch hooks, summaries; one object may
            be both a step and an epoch hook).
        sinks: where their values go.
        make_probes: builds a fresh ProbeCache (eval-mode embeddings) at an epoch's end.
        prepare_step: turns the trainer's view into the one hooks see (under torchrun:
            the global batch gathered from every process); None = as it comes.
    """

    def __init__(
        self,
        hooks: Sequence[Hook],
        sinks: Sequence[Sink],
        make_probes: Callable[[], ProbeCache],
        prepare_step: Callable[[StepView], StepView] | None = None,
    ) -> None:
        self.hooks = list(hooks)
        self.step_hooks = [h for h in self.hooks if isinstance(h, StepHook)]
        self.epoch_hooks = [h for h in self.hooks if isinstance(h, EpochHook)]
        self.summaries = [h for h in self.hooks if isinstance(h, Summary)]
        self.sinks, self.make_probes, self.prepare_step = list(sinks), make_probes, prepare_step
        self.verdict = ""

    def _finish(self, scope: str, index: int, values: Values) -> None:
        for summary in self.summaries:
            values.update(summary.summarise(scope, index, values))
        if values:
            for sink in self.sinks:
                sink.write(scope, index, values)

    def on_step_end(self, view: StepView) -> None:
        """Run every due step hook."""
        due = [h for h in self.step_hooks if view.step % h.step_every == 0]
        if due and self.prepare_step is not None:
            view = self.prepare_step(view)
        values: Values = {}
        for hook in due:
            values.update(hook.on_step(view))
        self._finish("step", view.step, values)

    def on_epoch_end(self, view: EpochView) -> None:
        """Run every due epoch hook, sharing one set of probe embeddings."""
        due = [h for h in self.epoch_hooks if epoch_due(view.epoch, view.is_last, h.epoch_every)]
        probes = self.make_probes()
        wanted = stage_sets(due)
        if wanted:  # the first pass holding their rows records the stage outputs
            probes.expect_stages(wanted)
        values: Values = {}
        for hook in due:
            values.update(hook.on_epoch(view, probes))
        self._finish("epoch", view.epoch, values)
        self.verdict = str(values.get("verdict", self.verdict))

    def state_dict(self) -> dict[str, Any]:
        """Within-epoch state of the stateful hooks, for a checkpoint taken mid-epoch.

        Keys are ``"<position>:<class name>"`` so a state is only restored into the same hook.
        """
        return {
            f"{i}:{type(h).__name__}": h.state_dict()
            for i, h in enumerate(self.hooks)
            if hasattr(h, "state_dict")
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (unknown keys are ignored)."""
        for i, h in enumerate(self.hooks):
            key = f"{i}:{type(h).__name__}"
            if key in state and hasattr(h, "load_state_dict"):
                h.load_state_dict(state[key])

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()
