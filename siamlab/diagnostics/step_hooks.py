"""Per-step hooks on the training batch: gradient norms and the two views' geometry.

These run inside the training loop, so each costs O(B d) or one pass over the gradients
(a few milliseconds against a step of a second or more; README, "Collapse diagnostics").
Their values are in train mode: the BN layers use the batch's statistics.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from siamlab.diagnostics.geometry import alignment, branch_cosine
from siamlab.diagnostics.gradients import MODULES, module_grad_norms
from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.std import centre_ratio
from siamlab.train.loop import EpochView, StepView


@dataclass
class GradNormHook:
    """l2 norm of the gradient of the backbone, projector and predictor.

    Read after the optimiser step, when ``.grad`` still holds this step's gradient. NaN
    for a part without parameters (an identity predictor) or without gradient (a frozen
    one). See :mod:`siamlab.diagnostics.gradients` for what it shows.
    """

    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        if view.step % self.every:
            return {}
        norms = module_grad_norms(view.model, MODULES)  # (3,)
        return {"grad_norm": np.asarray(norms, dtype=np.float64)}

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        return {}


@dataclass
class BatchGeometryHook:
    """Alignment of the two views, backbone branch cosine and centre ratio, per batch.

    * ``z_alignment_train`` = E||z1/|z1| - z2/|z2|||^2 over the batch's positive pairs
      (Wang & Isola, "Understanding Contrastive Representation Learning through Alignment
      and Uniformity on the Hypersphere", ICML 2020): 0 = the views map to one point.
    * ``h_branch_cosine_train`` = mean cos(h1, h2): how alike the backbone sees the views.
    * ``z_centre_ratio_train`` = ||E[z1/|z1|]|| (Zhang et al., ICLR 2022): -> 1 under
      collapse, a healthy floor of ~1/sqrt(B).
    """

    every: int = 1

    def on_step(self, view: StepView) -> dict[str, Any]:
        if view.step % self.every:
            return {}
        out = view.output
        return {
            "z_alignment_train": alignment(out.z1, out.z2),
            "h_branch_cosine_train": branch_cosine(out.h1, out.h2),
            "z_centre_ratio_train": centre_ratio(out.z1),
        }

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> dict[str, Any]:
        return {}
