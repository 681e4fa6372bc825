"""Where the step diagnostics' time goes: each step hook, the summaries and each sink, timed.

``siamlab bench`` reports the share of siamlab's step spent in the step diagnostics; this
splits that share by part, so a slow hook or sink is named rather than guessed. The
monitor's step hooks and sinks are replaced by timing proxies that forward every call
unchanged (values, schedules and order are those of the real run).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from siamlab.bench.measure import synchronize
from siamlab.diagnostics.hooks import StepHook, Values
from siamlab.diagnostics.monitor import Monitor, Sink
from siamlab.diagnostics.registry import HOOKS
from siamlab.train.views import StepView

_HOOK_NAMES = {path.partition(":")[2]: name for name, path in HOOKS.items()}


def part_name(obj: object) -> str:
    """A hook's registered name (e.g. ``batch_geometry``), else its class name."""
    cls = type(obj).__name__
    return _HOOK_NAMES.get(cls, cls)


class _TimedStepHook:
    """Forwards ``on_step`` to ``hook`` and adds its wall time to ``seconds[name]``."""

    def __init__(self, hook: StepHook, seconds: dict[str, float]) -> None:
        self.hook, self.seconds, self.name = hook, seconds, part_name(hook)

    @property
    def step_every(self) -> int:
        return self.hook.step_every

    def on_step(self, view: StepView) -> Values:
        device = view.output.z1.device
        synchronize(device)  # on CUDA, what the step or the hook before it queued
        t0 = time.perf_counter()
        out = self.hook.on_step(view)
        synchronize(device)
        self.seconds[self.name] += time.perf_counter() - t0
        return out


class _TimedSink:
    """Forwards ``write`` to ``sink`` and times it when the scope is "step"."""

    def __init__(self, sink: Sink, seconds: dict[str, float]) -> None:
        self.sink, self.seconds, self.name = sink, seconds, f"sink: {type(sink).__name__}"

    def write(self, scope: str, index: int, values: Mapping[str, Any]) -> None:
        t0 = time.perf_counter()
        self.sink.write(scope, index, values)
        if scope == "step":
            self.seconds[self.name] += time.perf_counter() - t0

    def close(self) -> None:
        self.sink.close()


def time_parts(monitor: Monitor) -> dict[str, float]:
    """Wrap ``monitor``'s step hooks and sinks in timers; return the (live) seconds per part.

    The dict fills as the monitor runs; clear it to restart the count (after a warm-up).
    """
    seconds: dict[str, float] = defaultdict(float)
    monitor.step_hooks = [_TimedStepHook(h, seconds) for h in monitor.step_hooks]  # type: ignore[misc]
    monitor.sinks = [_TimedSink(s, seconds) for s in monitor.sinks]
    return seconds
