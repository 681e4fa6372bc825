"""Std of the l2-normalised outputs: on the training batch and on the held-out split.

SimSiam (Chen & He, CVPR 2021) Sec. 4.1, Fig. 2 middle: ~1/sqrt(d) when healthy, 0 when
collapsed.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch

from siamlab.diagnostics.hooks import HookContext, Values
from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.std import channel_std, mean_channel_std, unit_mean_channel_std
from siamlab.results.schema import TRAIN_VIEW1, ResultVar
from siamlab.train.views import EpochView, StepView

TEST_SPLIT = {"bn_mode": "eval", "data": "test split under the test transform"}


@dataclass
class TrainStdHook:
    """Std of z/||z|| on the training batch in train mode (paper Fig. 2 middle).

    The projector's output BN re-standardises every training batch, so this value
    resists falling to 0 even while the network collapses; see :class:`EvalStdHook`.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "z_std_train",
            ("step",),
            "mean over channels of the std of z/||z|| on the training batch",
            "1",
            TRAIN_VIEW1,
        ),
    )
    step_every: int = 1

    @classmethod
    def build(cls, ctx: HookContext) -> "TrainStdHook":
        """Every ``diagnostics.std_every_steps`` steps."""
        return cls(ctx.cfg.std_every_steps)

    def on_step(self, view: StepView) -> Values:
        """From the view's float64 unit rows of z1 (shared with the centre ratio)."""
        zn = view.unit_rows("z1", torch.float64)  # (B, d)
        return {"z_std_train": float(unit_mean_channel_std(zn).item())}


@dataclass
class EvalStdHook:
    """Std of z/||z||, h/||h|| and p/||p|| on the held-out test split in eval mode.

    Eval mode is where it tells the truth; h shows whether collapse starts in the backbone.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "z_std_eval",
            ("epoch",),
            "mean over channels of the std of z/||z|| on the test split (paper Fig. 2 middle)",
            "1",
            TEST_SPLIT,
        ),
        ResultVar(
            "z_channel_std_eval",
            ("epoch", "channel"),
            "per-channel std of z/||z|| on the test split",
            "1",
            TEST_SPLIT,
        ),
        ResultVar(
            "h_std_eval",
            ("epoch",),
            "mean over channels of the std of h/||h|| (backbone features)",
            "1",
            TEST_SPLIT,
        ),
        ResultVar(
            "p_std_eval",
            ("epoch",),
            "mean over channels of the std of p/||p|| (predictor outputs)",
            "1",
            TEST_SPLIT,
        ),
    )
    epoch_every: int = 1

    @classmethod
    def build(cls, ctx: HookContext) -> "EvalStdHook":
        """On ``diagnostics.eval_every_epochs``."""
        return cls(ctx.every(ctx.cfg.eval_every_epochs))

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> Values:
        test = probes.get("test")
        per_channel = channel_std(test.z)  # (d,)
        return {
            "z_std_eval": float(per_channel.mean()),
            "z_channel_std_eval": per_channel.numpy(),
            "h_std_eval": mean_channel_std(test.h),
            "p_std_eval": mean_channel_std(test.p),
        }
