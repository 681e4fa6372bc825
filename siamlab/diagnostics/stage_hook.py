"""Epoch hook: spectrum, RankMe, effective rank and channel std of every backbone stage.

Collapse need not reach the whole network at once: a representation whose projector
output has collapsed may keep full-rank features a few layers down, and the rank of the
intermediate layers tells how far back the collapse has spread (docs/diagnostics.md,
"Per-stage spectra"). Each stage's output feature map (B, C_k, H_k, W_k) is
global-average-pooled to (B, C_k), the pooling that turns the last stage into h, and
measured on the probe set in eval mode with the same functions as h in
:class:`~siamlab.diagnostics.spectrum_hook.SpectrumHook`, so the last stage's values
equal ``h_spectrum``, ``h_rankme`` and ``h_erank`` (and its std ``mean_channel_std(h)``).

The stage outputs come from the same eval pass as the other probe embeddings
(:meth:`~siamlab.diagnostics.probe.ProbeCache.stages`; no extra pass when the kNN bank
is embedded that epoch).
"""

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from siamlab.diagnostics.hooks import HookContext, Values
from siamlab.diagnostics.probe import ProbeCache
from siamlab.diagnostics.rank import effective_rank, rankme
from siamlab.diagnostics.spectrum_hook import accumulate, log_safe
from siamlab.diagnostics.std import mean_channel_std
from siamlab.results.schema import PROBE_SET, ResultVar
from siamlab.train.views import EpochView

STAGE_PROBE = {**PROBE_SET, "rows": "raw (pooled stage output)"}


def stage_values(outputs: tuple[Tensor, ...], device: torch.device) -> Values:
    """The values of :class:`StageSpectrumHook` for pooled stage outputs (N, C_k) each.

    ``stage_spectrum`` is (stages, max C_k), NaN past a stage's own width.
    """
    width = max(x.shape[1] for x in outputs)
    spectra = np.full((len(outputs), width), np.nan)  # (S, C_max)
    ranks, eranks, stds = [], [], []
    for k, x in enumerate(outputs):  # (N, C_k)
        acc = accumulate(x, False, device)
        sv = acc.singular_values()  # (C_k,) raw, uncentred
        spectra[k, : x.shape[1]] = log_safe(acc.eigenvalues())  # centred
        ranks.append(rankme(sv))
        eranks.append(effective_rank(sv))
        stds.append(mean_channel_std(x))
    return {
        "stage_spectrum": spectra,
        "stage_rankme": np.array(ranks),
        "stage_erank": np.array(eranks),
        "stage_std": np.array(stds),
    }


@dataclass
class StageSpectrumHook:
    """Per backbone stage: covariance spectrum, RankMe, effective rank, channel std.

    * ``stage_spectrum``: centred covariance eigenvalues of the raw pooled output (as
      ``h_spectrum``; Jing et al., ICLR 2022), descending.
    * ``stage_rankme`` (Garrido et al., ICML 2023, eps 1e-7) and ``stage_erank`` (Roy &
      Vetterli 2007) of the raw, uncentred matrix's singular values (as ``h_rankme``).
    * ``stage_std``: mean over channels of the std of x/||x|| (SimSiam Sec. 4.1, as
      ``h_std_eval``); about 1/sqrt(C_k) for a healthy stage.
    """

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "stage_spectrum",
            ("epoch", "stage", "component"),
            "eigenvalues of the centred covariance of each backbone stage's pooled output "
            "(Jing et al. 2022), descending, float64, clamped below at 1e-15 x the largest; "
            "NaN past the stage's width",
            "1",
            STAGE_PROBE,
        ),
        ResultVar(
            "stage_rankme",
            ("epoch", "stage"),
            "RankMe (eps 1e-7) of each backbone stage's pooled output, raw uncentred "
            "singular values (Garrido et al. 2023)",
            "1",
            STAGE_PROBE,
        ),
        ResultVar(
            "stage_erank",
            ("epoch", "stage"),
            "effective rank of each backbone stage's pooled output, raw uncentred singular "
            "values (Roy & Vetterli 2007)",
            "1",
            STAGE_PROBE,
        ),
        ResultVar(
            "stage_std",
            ("epoch", "stage"),
            "mean over channels of the std of x/||x||, x a backbone stage's pooled output",
            "1",
            STAGE_PROBE,
        ),
    )
    stage_probe: ClassVar[str] = "probe"  # the ProbeCache set whose stage outputs it reads
    epoch_every: int = 1

    @classmethod
    def build(cls, ctx: HookContext) -> "StageSpectrumHook":
        """On ``diagnostics.spectrum_every_epochs`` (with the spectra of z, p and h)."""
        return cls(ctx.every(ctx.cfg.spectrum_every_epochs))

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> Values:
        outputs = probes.stages(self.stage_probe)  # (N, C_k) per stage
        if not outputs or not all(bool(torch.isfinite(x).all()) for x in outputs):
            return {}  # no stages (a user's model) or a numerical blow-up
        try:
            return stage_values(outputs, probes.device)
        except torch.linalg.LinAlgError as exc:  # ill-conditioned beyond float64
            warnings.warn(f"stage spectra skipped at epoch {view.epoch}: {exc}", stacklevel=2)
            return {}
