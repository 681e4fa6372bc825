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

import math
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


def _steps_per_epoch(ds: xr.Dataset) -> int:
    """Steps per epoch: results files are written at an epoch's end, so exact."""
    return ds.sizes["step"] // max(int(ds["epoch"].values.max()), 1)


def _per_epoch_from_steps(ds: xr.Dataset, name: str, epochs: np.ndarray) -> np.ndarray:
    """Mean of a step variable over each epoch's steps (NaN where it is not recorded)."""
    if name not in ds:
        return np.full(len(epochs), math.nan)
    values, spe = ds[name].values, _steps_per_epoch(ds)  # (T,)
    return np.array([np.nanmean(values[(e - 1) * spe : e * spe]) for e in epochs])


def _start_from_steps(ds: xr.Dataset, start_steps: int, epochs: np.ndarray) -> np.ndarray:
    """Per epoch, the start loss the judge had by its end, from the step values.

    As :meth:`~siamlab.diagnostics.verdict.VerdictJudge` takes it: the first
    ``start_steps`` measured cosine losses (-``pz_cosine_train``), the recorded ``loss`` of
    the steps before a first cosine; until ``start_steps`` are in, those seen so far.

    Raises:
        ResultsError: neither ``pz_cosine_train`` nor ``loss`` is recorded per step.
    """
    if "pz_cosine_train" not in ds and "loss" not in ds:
        raise ResultsError(
            "no step losses recorded (pz_cosine_train, loss): the start loss cannot be "
            "recomputed for another diagnostics.verdict.start_steps; keep the run's"
        )
    nan = np.full(ds.sizes["step"], math.nan)
    cosine = ds["pz_cosine_train"].values if "pz_cosine_train" in ds else nan  # (T,)
    loss = ds["loss"].values if "loss" in ds else nan  # (T,)
    picked: list[tuple[int, float]] = []  # (0-based step, judged loss)
    seen_cosine = False
    for t in range(len(cosine)):
        if len(picked) >= start_steps:
            break
        if math.isfinite(cosine[t]):
            picked.append((t, -float(cosine[t])))
            seen_cosine = True
        elif math.isfinite(loss[t]) and not seen_cosine:
            picked.append((t, float(loss[t])))
    spe = _steps_per_epoch(ds)
    starts = [[v for t, v in picked if t < e * spe] for e in epochs]
    return np.array([float(np.mean(v)) if v else math.nan for v in starts])


def judged_epochs(ds: xr.Dataset) -> np.ndarray:
    """The epochs the judge judged: those with a recorded state.

    Older files without the per-epoch ``verdict``: those with a finite ``z_std_eval``,
    which misses an epoch judged ``unstable`` for non-finite embeddings.
    """
    if "verdict" in ds and ds["verdict"].dims == ("epoch",):
        states = ds["verdict"].values
        return ds["epoch"].values[[isinstance(v, str) and v != "" for v in states]]
    return ds["epoch"].values[np.isfinite(ds["z_std_eval"].values)]


def judge_inputs(ds: xr.Dataset, start_steps: int | None = None) -> list[dict[str, Any]]:
    """Per judged epoch of one run, what the rule reads, as recorded.

    Args:
        ds: one run's results (:func:`~siamlab.results.store.open_run`).
        start_steps: steps whose mean loss is the start loss; None = the run's own (the
            recorded ``start_loss``), else recomputed from the step losses.

    Raises:
        ResultsError: the file has no evaluated epoch or lacks the judged loss.
    """
    if "z_std_eval" not in ds or "epoch" not in ds.coords:
        raise ResultsError("no evaluated epoch in this file (no z_std_eval): nothing to judge")
    evaluated = judged_epochs(ds)
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
    """The verdict thresholds the run was judged with.

    Its ``verdict_*`` attrs, else its config's ``diagnostics.verdict`` (defaults where
    unset).

    Raises:
        ResultsError: the recorded thresholds are not valid today (a renamed key).
    """
    given: dict[str, Any] = {
        key: ds.attrs[f"verdict_{key}"]
        for key in VerdictConfig.model_fields
        if f"verdict_{key}" in ds.attrs
    }
    if not given:
        config = yaml.safe_load(str(ds.attrs.get("config", "")) or "{}") or {}
        given = (config.get("diagnostics") or {}).get("verdict") or {}
    ints = {k for k, f in VerdictConfig.model_fields.items() if f.annotation is int}
    given = {k: int(v) if k in ints else v for k, v in given.items()}  # attrs hold floats
    try:
        return VerdictConfig(**given)
    except (ValidationError, TypeError) as exc:
        raise ResultsError(
            f"the run's recorded verdict thresholds {given} are not valid today ({exc}); "
            "judge it with today's thresholds instead"
        ) from None


def recorded_start_steps(ds: xr.Dataset) -> int | None:
    """The ``start_steps`` the run's recorded start loss was taken over (None: unknown)."""
    try:
        return run_thresholds(ds).start_steps
    except ResultsError:
        return None


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
        key = [(v.verdict, v.onset_epoch, v.provisional) for v in (self.recorded, self.now)]
        return key[0] != key[1]


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
            own = run_thresholds(ds) if base == "run" else VerdictConfig()
            cfg = thresholds(own, overrides)
            own_start = cfg.start_steps == recorded_start_steps(ds)
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
