"""Diagnostics of the EM-hypothesis targets (paper Sec. 5): drift, agreement, age."""

import math
from dataclasses import dataclass
from typing import ClassVar

from siamlab.diagnostics.hooks import HookContext, Values
from siamlab.results.schema import ResultVar
from siamlab.train.views import StepView


@dataclass
class EtaStatsHook:
    """Records the eta provider's per-step statistics (NaN values are skipped).

    ``eta_drift``: mean ||eta_new/|eta_new| - eta_old/|eta_old||| of the rows that
    changed; ``eta_cosine``: mean cosine between the current F(T(x)) and the eta_x it
    is trained towards (before the update, for the moving average); ``eta_age``: steps
    since those targets were computed. Conditional: built only for a run with eta targets.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "eta_drift",
            ("step",),
            "mean distance between successive unit-normalised eta_x of the refreshed rows",
            "1",
        ),
        ResultVar(
            "eta_cosine",
            ("step",),
            "mean cosine between F(T(x)) and the eta_x it is trained towards",
            "1",
        ),
        ResultVar(
            "eta_age", ("step",), "mean steps since the batch's targets were computed", "steps"
        ),
    )
    step_every: int = 1

    @classmethod
    def build(cls, ctx: HookContext) -> "EtaStatsHook | None":
        """Every step of a run with eta targets; None without them."""
        return cls() if ctx.has_targets else None

    def on_step(self, view: StepView) -> Values:
        return {k: v for k, v in view.target_stats.items() if not math.isnan(v)}
