"""The values a result variable can take, so that a seed band never leaves them.

A mean ± t interval over a few seeds can reach past what the quantity can be (a std
below 0, a kNN accuracy above 1); :func:`~siamlab.plots.frames.band_frame` clips the
band's edges to :func:`value_range` (the mean line is never changed). The units of the
results schema are all ``"1"``, so the ranges are declared here, by name; a variable not
listed is signed and unbounded (the losses: their range depends on the objective).
"""

import math
from collections.abc import Mapping
from types import MappingProxyType

UNIT = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)
COSINE = (-1.0, 1.0)
NON_POSITIVE = (-math.inf, 0.0)
UNBOUNDED = (-math.inf, math.inf)
BRANCHES = ("z", "p", "h")


def _ranges() -> dict[str, tuple[float, float]]:
    """Every bounded variable by name (log-uniformity: log E exp(-t d^2) <= 0)."""
    unit = [  # accuracies, fractions, norms of means of unit vectors, stds of unit vectors
        "knn_top1",
        "z_erank_fraction",
        "z_centre_ratio",
        "z_centre_ratio_train",
        "z_std_train",
        "z_std_eval",
        "z_channel_std_eval",
        "h_std_eval",
        "p_std_eval",
        "stage_std",
        *(f"{b}_{q}" for b in BRANCHES for q in ("centre_norm", "residual_norm")),
        *(f"{b}_residual_erank_fraction" for b in BRANCHES),
    ]
    non_negative = [  # norms, spectra, ranks, noise levels, rates, distances, ages
        "lr",
        "images_per_second",
        "grad_norm",
        "z_alignment_train",
        "pz_cosine_sem_train",
        "z_spectrum",
        "p_spectrum",
        "h_spectrum",
        "stage_spectrum",
        "z_rankme",
        "z_erank",
        "h_rankme",
        "h_erank",
        "stage_rankme",
        "stage_erank",
        "pred_commutator",
        "pred_asymmetry",
        "loss_jitter",
        "loss_noise",
        "loss_noise_ratio",
        "eta_drift",
        "eta_age",
        *(f"{b}_residual_std" for b in BRANCHES),
    ]
    cosine = [
        "h_branch_cosine_train",
        "pz_cosine_train",
        "pred_cosine",
        "pred_cosines",
        "eta_cosine",
    ]
    non_positive = ["z_uniformity", *(f"{b}_residual_uniformity" for b in BRANCHES)]
    groups = {UNIT: unit, NON_NEGATIVE: non_negative, COSINE: cosine, NON_POSITIVE: non_positive}
    return {name: bounds for bounds, names in groups.items() for name in names}


VALUE_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(_ranges())


def value_range(name: str, scale: float = 1.0) -> tuple[float, float]:
    """(lowest, highest) value of result variable ``name`` plotted times ``scale``.

    ``scale`` as in :func:`~siamlab.plots.frames.series_frame` (100 for %); a variable
    without a declared range gets (-inf, inf).
    """
    lo, hi = VALUE_RANGES.get(name, UNBOUNDED)
    ends = sorted((lo * scale, hi * scale))  # a negative scale swaps them
    return ends[0], ends[1]
