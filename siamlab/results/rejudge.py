"""Judge finished runs again from their results files: today's rule, or other thresholds.

The verdict judge records every input of the rule next to its output (per evaluated
epoch: ``cosine_loss``, ``start_loss``, ``loss_jitter``, ``loss_noise``, ``z_std_eval``
and the centred geometry ``z_residual_*``; :mod:`siamlab.diagnostics.verdict`), so a run
can be judged again without training: under the thresholds calibrated since it ran
(README, "How often the verdict is right"), under its own recorded ones (the rule's code
may have changed), or under any others (how close a verdict is to a threshold). Nothing
is written; ``siamlab rejudge`` prints the result, :func:`rejudged_dataset` returns it.
Files recorded before the judge stored its inputs are judged from their step values
(the judged loss per epoch from ``pz_cosine_train``), as ``analysis/verdict_calibration.py``
does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
import yaml
from pydantic import ValidationError

from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict import signals_from_epochs
from siamlab.diagnostics.verdict_rule import RunVerdict, judge_epoch, run_verdict
from siamlab.errors import ConfigError, ResultsError
from siamlab.results.store import open_run, run_dirs
from siamlab.results.verdicts import verdict_from_attrs

Thresholds = Literal["current", "run"]
GEOMETRY = ("z_std_eval", "z_residual_norm", "z_residual_erank_fraction", "z_residual_std")


def _per_epoch_from_steps(ds: xr.Dataset, name: str, epochs: np.ndarray) -> np.ndarray:
    """Mean of a step variable over each epoch's steps (steps split evenly over epochs)."""
    values = ds[name].values  # (T,)
    spe = len(values) // max(int(ds["epoch"].values.max()), 1)
    return np.array([np.nanmean(values[(e - 1) * spe : e * spe]) for e in epochs])


def _start_from_steps(ds: xr.Dataset, start_steps: int, epochs: np.ndarray) -> np.ndarray:
    """Per epoch, the judged loss of the first ``start_steps`` measured steps seen by its end.

    As the judge computes it: until ``start_steps`` steps are measured, the start is the
    mean of those measured so far.
    """
    cosine = ds["pz_cosine_train"].values  # (T,), NaN where not measured
    spe = len(cosine) // max(int(ds["epoch"].values.max()), 1)
    starts = []
    for e in epochs:
        seen = cosine[: e * spe]
        starts.append(float(-np.mean(seen[np.isfinite(seen)][:start_steps])))
    return np.array(starts)


def judge_inputs(ds: xr.Dataset, start_steps: int | None = None) -> list[dict[str, Any]]:
    """Per evaluated epoch of one run, what the rule reads, as recorded.

    Args:
        ds: one run's results (:func:`~siamlab.results.store.open_run`).
        start_steps: steps whose mean loss is the start loss; None = the run's own (the
            recorded ``start_loss``), else recomputed from ``pz_cosine_train``.

    Raises:
        ResultsError: the file has no evaluated epoch or lacks the judged loss.
    """
    if "z_std_eval" not in ds or "epoch" not in ds.coords:
        raise ResultsError("no evaluated epoch in this file (no z_std_eval): nothing to judge")
    evaluated = ds["epoch"].values[np.isfinite(ds["z_std_eval"].values)]
    recorded = "cosine_loss" in ds and "loss_noise" in ds
    if not recorded and "pz_cosine_train" not in ds:
        raise ResultsError("neither the judge's inputs nor pz_cosine_train are recorded")
    if recorded:
        sel = ds.sel(epoch=evaluated)
        cosine, noise = sel["cosine_loss"].values, sel["loss_noise"].values
        start = sel["start_loss"].values  # (E,): grows with the steps seen until start_steps
    else:  # a run recorded before the judge stored its inputs
        cosine = -_per_epoch_from_steps(ds, "pz_cosine_train", evaluated)
        noise = _per_epoch_from_steps(ds, "pz_cosine_sem_train", evaluated)
    if start_steps is not None or not recorded:
        start = _start_from_steps(ds, start_steps or VerdictConfig().start_steps, evaluated)
    out = []
    for i, epoch in enumerate(evaluated):
        row = ds.sel(epoch=epoch)
        record = {"epoch": int(epoch), "cosine_loss": float(cosine[i])}
        record["start_loss"] = float(start[i])
        record["loss_noise"] = float(noise[i])
        for key in ("loss_jitter", *GEOMETRY, "knn_top1"):
            if key in row:
                record[key] = float(row[key])
        out.append(record)
    return out


def run_thresholds(ds: xr.Dataset) -> VerdictConfig:
    """The verdict thresholds the run was judged with (its config's; defaults where unset).

    Raises:
        ResultsError: the recorded thresholds are not valid today (a renamed key).
    """
    config = yaml.safe_load(str(ds.attrs.get("config", "")) or "{}") or {}
    given = (config.get("diagnostics") or {}).get("verdict") or {}
    try:
        return VerdictConfig(**given)
    except ValidationError as exc:
        raise ResultsError(
            f"the run's recorded thresholds {given} are not valid today ({exc.errors()[0]['msg']});"
            " re-judge it with --thresholds current"
        ) from None


def thresholds(base: VerdictConfig, overrides: Mapping[str, object]) -> VerdictConfig:
    """``base`` with ``overrides`` (threshold name -> value), checked.

    Raises:
        ConfigError: an unknown threshold or a value out of its range.
    """
    unknown = sorted(set(overrides) - set(VerdictConfig.model_fields))
    if unknown:
        raise ConfigError(
            f"unknown verdict threshold(s) {', '.join(unknown)}; the thresholds: "
            f"{', '.join(f'diagnostics.verdict.{k}' for k in VerdictConfig.model_fields)}"
        )
    try:
        return VerdictConfig(**(base.model_dump() | dict(overrides)))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"diagnostics.verdict.{first['loc'][0]}: {first['msg']}") from None


def judge_run(ds: xr.Dataset, cfg: VerdictConfig, own_start: bool = True) -> RunVerdict:
    """The run verdict of one run's results under ``cfg`` (a diverged run stays unstable).

    Args:
        ds: the run's results.
        cfg: the thresholds.
        own_start: keep the recorded start loss (False: recompute it for ``cfg.start_steps``).
    """
    status = str(ds.attrs.get("status", ""))
    if status == "diverged":
        return verdict_from_attrs(ds.attrs)
    records = judge_inputs(ds, None if own_start else cfg.start_steps)
    judged = [(s.epoch, *judge_epoch(cfg, s)) for s in signals_from_epochs(records, cfg)]
    return run_verdict(judged, cfg.hold_evaluations) if judged else RunVerdict()


@dataclass(frozen=True)
class Rejudged:
    """One run: its verdict as recorded and as judged again."""

    study: str
    variant: str
    seed: int
    status: str
    recorded: RunVerdict
    now: RunVerdict

    @property
    def changed(self) -> bool:
        """Whether the verdict, its onset or its provisional mark differ."""
        a, b = self.recorded, self.now
        return (a.verdict, a.onset_epoch, a.provisional) != (
            b.verdict,
            b.onset_epoch,
            b.provisional,
        )


def rejudge(
    study_dirs: Sequence[Path], overrides: Mapping[str, object], base: Thresholds = "current"
) -> list[Rejudged]:
    """Judge every run of the study folders again.

    Args:
        study_dirs: folders holding ``<variant>/seed<k>/metrics.nc``.
        overrides: threshold name -> value, applied on top of ``base``.
        base: ``current``: today's defaults; ``run``: each run's own recorded thresholds.

    Raises:
        ConfigError: an unknown threshold or a bad value.
        ResultsError: a folder without runs, an unreadable file.
    """
    thresholds(VerdictConfig(), overrides)  # a bad key fails before any file is read
    out = []
    for study_dir in study_dirs:
        runs = run_dirs(study_dir)
        if not runs:
            raise ResultsError(f"no runs under {study_dir} (expected <variant>/seed<k>/metrics.nc)")
        for run_dir in runs:
            ds = open_run(run_dir)
            recorded = _recorded_thresholds(ds)
            own = run_thresholds(ds) if base == "run" else VerdictConfig()
            cfg = thresholds(own, overrides)
            own_start = recorded is not None and cfg.start_steps == recorded.start_steps
            out.append(
                Rejudged(
                    str(ds.attrs.get("study", study_dir.name)),
                    run_dir.parent.name,
                    int(ds.attrs.get("seed", run_dir.name.removeprefix("seed"))),
                    str(ds.attrs.get("status", "")),
                    verdict_from_attrs(ds.attrs),
                    judge_run(ds, cfg, own_start),
                )
            )
    return out


def _recorded_thresholds(ds: xr.Dataset) -> VerdictConfig | None:
    """:func:`run_thresholds`, or None where the recorded ones are not valid today."""
    try:
        return run_thresholds(ds)
    except ResultsError:
        return None


def rejudged_dataset(rows: Sequence[Rejudged], cfg_note: str) -> xr.Dataset:
    """The runs as a Dataset over dim ``run`` (``study/variant/seed<k>``; README, Results schema).

    Args:
        rows: from :func:`rejudge`.
        cfg_note: which thresholds were used (the ``thresholds`` attr).
    """
    names = [f"{r.study}/{r.variant}/seed{r.seed}" for r in rows]
    coords = {
        "run": ("run", names, {"long_name": "study/variant/seed of the run"}),
        "study": ("run", [r.study for r in rows], {"long_name": "study"}),
        "variant": ("run", [r.variant for r in rows], {"long_name": "variant"}),
        "seed": ("run", [r.seed for r in rows], {"long_name": "seed"}),
    }

    def var(values: list[Any], long_name: str) -> tuple[str, list[Any], dict[str, str]]:
        return ("run", values, {"long_name": long_name, "units": "1"})

    data = {
        "recorded_verdict": var([r.recorded.verdict for r in rows], "run verdict as recorded"),
        "recorded_onset_epoch": var(
            [r.recorded.onset_epoch for r in rows], "onset epoch as recorded (0: none)"
        ),
        "verdict": var([r.now.verdict for r in rows], "run verdict judged again"),
        "onset_epoch": var([r.now.onset_epoch for r in rows], "its onset epoch (0: none)"),
        "provisional": var([int(r.now.provisional) for r in rows], "1 = provisional"),
        "evidence": var([r.now.evidence for r in rows], "the evidence of the new verdict"),
        "changed": var([int(r.changed) for r in rows], "1 = verdict, onset or mark differ"),
    }
    return xr.Dataset(data, coords=coords, attrs={"thresholds": cfg_note})
