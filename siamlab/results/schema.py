"""The written schema of a run's ``metrics.nc`` (an xarray Dataset, netCDF4 file).

Dims: ``step`` (global SGD step, 1-based), ``epoch`` (1-based, value recorded after
that epoch), ``channel`` (index into z's d channels), ``component`` (index of an
eigenvalue or eigenvector, sorted descending: 0 = largest), ``module`` (backbone,
projector, predictor). Every dim is a coordinate (see ``DIMS``). A variable over
``epoch`` alone may hold strings (``verdict``); missing epochs are then ``""``.
Every variable has ``long_name`` and ``units``; those measured on a probe say how
(``bn_mode``: the BatchNorm mode the model was in, ``data``: which samples).

Dataset attrs (provenance): ``study``, ``variant``, ``seed``, ``profile``,
``status`` (running | finished | failed | diverged), ``config`` (the resolved
config as YAML), ``siamlab_version``, ``torch_version``, ``python_version``,
``created``, ``updated``, ``dim`` (d), ``std_reference`` (1/sqrt(d)),
``diverged_step`` when status is diverged.

Variables named ``eval_*`` have no dims: one number per run, added to a finished run's
file by ``siamlab eval`` (:mod:`siamlab.evaluation.writeback`).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VarSpec:
    """Schema entry of one result variable."""

    dims: tuple[str, ...]
    long_name: str
    units: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DimSpec:
    """Schema entry of one dim: its coordinate's attrs and, if fixed, its labels."""

    long_name: str
    units: str = "1"
    labels: tuple[str, ...] = ()


DIMS: dict[str, DimSpec] = {
    "step": DimSpec("SGD step"),
    "epoch": DimSpec("epoch"),
    "channel": DimSpec("channel"),
    "component": DimSpec("index of the eigenvalue/eigenvector, sorted descending (0 = largest)"),
    "module": DimSpec("part of the network", labels=("backbone", "projector", "predictor")),
}


def dim_coordinate(dim: str, size: int) -> list[str] | list[int]:
    """Coordinate values of ``dim`` for an axis of ``size`` entries (labels or 0..size-1)."""
    labels = DIMS[dim].labels
    if labels:
        if len(labels) != size:
            raise ValueError(f"dim {dim!r} has {len(labels)} labels, got {size} values")
        return list(labels)
    return list(range(size))


VARIABLES: dict[str, VarSpec] = {
    "loss": VarSpec(
        ("step",), "training loss (paper Eq. 4 with the configured similarity and symmetry)", "1"
    ),
    "lr": VarSpec(("step",), "learning rate of the encoder", "1"),
    "z_std_train": VarSpec(
        ("step",),
        "mean over channels of the std of z/||z|| on the training batch",
        "1",
        {"bn_mode": "train", "data": "training batch (view 1)"},
    ),
    "epoch_loss": VarSpec(("epoch",), "mean training loss over the epoch", "1"),
    "z_std_eval": VarSpec(
        ("epoch",),
        "mean over channels of the std of z/||z|| on the probe set (paper Fig. 2 middle)",
        "1",
        {"bn_mode": "eval", "data": "test split under the test transform"},
    ),
    "z_channel_std_eval": VarSpec(
        ("epoch", "channel"),
        "per-channel std of z/||z|| on the probe set",
        "1",
        {"bn_mode": "eval", "data": "test split under the test transform"},
    ),
    "knn_top1": VarSpec(
        ("epoch",),
        "weighted kNN top-1 accuracy on the test split (paper Fig. 2 right)",
        "1",
        {"bn_mode": "eval", "data": "bank: train split, test transform; queries: test split"},
    ),
    "eta_drift": VarSpec(
        ("step",),
        "mean distance between successive unit-normalised eta_x of the refreshed rows",
        "1",
    ),
    "eta_cosine": VarSpec(
        ("step",), "mean cosine between F(T(x)) and the eta_x it is trained towards", "1"
    ),
    "eta_age": VarSpec(("step",), "mean steps since the batch's targets were computed", "steps"),
    "images_per_second": VarSpec(("epoch",), "training throughput over the epoch", "images/s"),
    # --- collapse diagnostics suite (siamlab.diagnostics; DIAGNOSTICS.md) ---
    "grad_norm": VarSpec(
        ("step", "module"),
        "l2 norm of the loss gradient over the module's parameters (NaN: no parameters)",
        "1",
    ),
    "z_alignment_train": VarSpec(
        ("step",),
        "alignment E||z1/|z1| - z2/|z2|||^2 of the batch's two views (Wang & Isola 2020)",
        "1",
        {"bn_mode": "train", "data": "training batch (both views)"},
    ),
    "h_branch_cosine_train": VarSpec(
        ("step",),
        "mean cosine between the backbone features of the two views",
        "1",
        {"bn_mode": "train", "data": "training batch (both views)"},
    ),
    "pz_cosine_train": VarSpec(
        ("step",),
        "mean cosine of each view's prediction with the other view's target (minus Eq. 2)",
        "1",
        {"bn_mode": "train", "data": "training batch (both views)"},
    ),
    "z_centre_ratio_train": VarSpec(
        ("step",),
        "centre ratio ||E[z/|z|]|| of the batch (Zhang et al. 2022; healthy floor ~1/sqrt(B))",
        "1",
        {"bn_mode": "train", "data": "training batch (view 1)"},
    ),
    "loss_jitter": VarSpec(
        ("epoch",),
        "step-to-step noise of the negative-cosine loss: RMS 2nd difference / sqrt(6)",
        "1",
    ),
    "h_std_eval": VarSpec(
        ("epoch",),
        "mean over channels of the std of h/||h|| (backbone features)",
        "1",
        {"bn_mode": "eval", "data": "test split under the test transform"},
    ),
    "p_std_eval": VarSpec(
        ("epoch",),
        "mean over channels of the std of p/||p|| (predictor outputs)",
        "1",
        {"bn_mode": "eval", "data": "test split under the test transform"},
    ),
    **{
        f"{x}_spectrum": VarSpec(
            ("epoch", "component"),
            f"eigenvalues of the centred covariance of {what} (Jing et al. 2022), descending, "
            "float64, clamped below at 1e-15 x the largest for log plots",
            "1",
            {"bn_mode": "eval", "data": "probe set", "rows": rows},
        )
        for x, what, rows in (
            ("z", "z", "l2-normalised"),
            ("p", "p", "l2-normalised"),
            ("h", "h (backbone)", "raw"),
        )
    },
    **{
        f"{x}_{kind}": VarSpec(
            ("epoch",),
            f"{name} of the raw uncentred {x} matrix's singular values ({ref})",
            "1",
            {"bn_mode": "eval", "data": "probe set"},
        )
        for x in ("z", "h")
        for kind, name, ref in (
            ("rankme", "RankMe (eps 1e-7)", "Garrido et al. 2023"),
            ("erank", "effective rank", "Roy & Vetterli 2007"),
        )
    },
    "z_erank_fraction": VarSpec(
        ("epoch",),
        "z_erank / min(d, N): effective rank of z as a fraction of its maximum",
        "1",
        {"bn_mode": "eval", "data": "probe set"},
    ),
    "h_alpha": VarSpec(
        ("epoch",),
        "alpha-ReQ power-law decay exponent of h_spectrum, ranks 4..100 (Agrawal et al. 2022)",
        "1",
        {"bn_mode": "eval", "data": "probe set"},
    ),
    "h_alpha_r2": VarSpec(
        ("epoch",),
        "weighted R^2 of the alpha-ReQ fit",
        "1",
        {"bn_mode": "eval", "data": "probe set"},
    ),
    "z_uniformity": VarSpec(
        ("epoch",),
        "uniformity log E exp(-2||z_i/|z_i| - z_j/|z_j|||^2) (Wang & Isola 2020)",
        "1",
        {"bn_mode": "eval", "data": "probe set (first diagnostics.uniformity_samples)"},
    ),
    "z_centre_ratio": VarSpec(
        ("epoch",),
        "centre ratio ||E[z/|z|]|| (Zhang et al. 2022)",
        "1",
        {"bn_mode": "eval", "data": "probe set"},
    ),
    "pred_cosine": VarSpec(
        ("epoch",),
        "mean over the top eigenvectors u_j of F=E[zz^T] of cos(u_j, W_p u_j) (Tian et al. 2021)",
        "1",
        {"bn_mode": "F: train (EMA over the epoch's batches); W_p: eval", "data": "probe set"},
    ),
    "pred_cosines": VarSpec(
        ("epoch", "component"),
        "cos(u_j, W_p u_j) for every eigenvector u_j of F, descending eigenvalue order",
        "1",
        {"bn_mode": "F: train (EMA over the epoch's batches); W_p: eval", "data": "probe set"},
    ),
    "pred_eigenvalues": VarSpec(
        ("epoch", "component"),
        "real parts of the eigenvalues of the (linearised) predictor W_p, descending",
        "1",
        {"bn_mode": "eval", "data": "probe set (least-squares linearisation p ~ W_p z + b)"},
    ),
    "pred_commutator": VarSpec(
        ("epoch",),
        "||F W_p - W_p F||_F / (||F||_F ||W_p||_F), 0 when they share eigenvectors",
        "1",
        {"bn_mode": "F: train (EMA over the epoch's batches); W_p: eval", "data": "probe set"},
    ),
    "pred_asymmetry": VarSpec(
        ("epoch",),
        "||W_p - W_p^T||_F / ||W_p||_F of the (linearised) predictor",
        "1",
        {"bn_mode": "eval", "data": "probe set"},
    ),
    "verdict": VarSpec(
        ("epoch",),
        "collapse verdict: healthy | collapsed | dimensional_collapse | unstable | "
        "not_converging ('' where not judged); thresholds in the attrs and config",
        "1",
    ),
    # Evaluations of a finished run (``siamlab eval``): dimensionless, written by
    # siamlab.evaluation.writeback with attrs recipe, data, path, checkpoint, evaluated.
    "eval_linear_top1": VarSpec(
        (),
        "linear-probe top-1 accuracy, frozen backbone (paper linear evaluation)",
        "1",
        {"bn_mode": "eval"},
    ),
    "eval_linear_top5": VarSpec(
        (), "linear-probe top-5 accuracy, frozen backbone", "1", {"bn_mode": "eval"}
    ),
    "eval_linear_train_top1": VarSpec(
        (),
        "linear-probe top-1 accuracy on its training data, last epoch",
        "1",
        {"bn_mode": "eval"},
    ),
    "eval_knn_top1": VarSpec(
        (),
        "weighted kNN top-1 accuracy on backbone features (InstDisc)",
        "1",
        {"bn_mode": "eval"},
    ),
    "eval_knn_top5": VarSpec(
        (),
        "weighted kNN top-5 accuracy on backbone features (InstDisc)",
        "1",
        {"bn_mode": "eval"},
    ),
}


def spec(name: str) -> VarSpec:
    """Look up a variable's schema entry.

    Raises:
        KeyError: for a variable not in the schema (every recorded value must be).
    """
    if name not in VARIABLES:
        raise KeyError(f"result variable {name!r} is not in siamlab.results.schema.VARIABLES")
    return VARIABLES[name]
