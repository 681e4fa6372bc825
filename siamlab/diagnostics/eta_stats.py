"""Diagnostics of the EM-hypothesis targets (paper Sec. 5): drift, agreement, age."""

import math
from dataclasses import dataclass
from typing import Any

from siamlab.diagnostics.probe import ProbeCache
from siamlab.train.loop import EpochView, StepView


@dataclass
class EtaStatsHook:
    """Records the eta provider's per-step statistics (NaN values are skipped).

    ``eta_drift``: mean ||eta_new/|eta_new| - eta_old/|eta_old||| of the rows that
    changed; ``eta_cosine``: mean cosine between the current F(T(x)) and the eta_x it
    is trained towards (before the update, for the moving average); ``eta_age``: steps
    since those targets were computed.
    """

    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        if view.step % self.every:
            return {}
        return {k: v for k, v in view.target_stats.items() if not math.isnan(v)}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        return {}
