"""``diagnostics.nc``: a diagnosed checkpoint's values in the schema of a run's ``metrics.nc``.

The same variables, dims (``epoch``: the checkpoints' epochs; ``channel``, ``component``),
``long_name`` / ``units`` / ``bn_mode`` / ``data`` attrs (built by the run's
:class:`~siamlab.results.recorder.Recorder`) and provenance attrs (README, "Results
schema"), with ``status`` ``diagnosed`` and ``study`` ``""``. The per-epoch ``verdict`` and
the ``run_verdict*`` variables are the embeddings-only rule's
(:mod:`siamlab.diagnose.verdict`); the training-loss variables are absent. Extra attrs:
``source`` (what was diagnosed), ``checkpoints`` (one ``epoch<TAB>file`` line each),
``checkpoint_format``, ``epoch_from``, ``measured`` (which outputs), ``verdict_branch``
(``z``, or ``h`` without a projector), ``verdict_basis`` (that in words, and the states
that need the loss), ``data`` (the probe sets), ``data_fingerprint`` (their images, as
a run records its own: :mod:`siamlab.data.fingerprint`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from siamlab.atomic import atomic_write
from siamlab.config.schema import RunConfig
from siamlab.diagnose.measure import Measurement
from siamlab.diagnose.verdict import NEEDS_LOSS, fold, hold_for, judge_embeddings
from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict import verdict_attrs
from siamlab.diagnostics.verdict_rule import RunVerdict
from siamlab.provenance import config_yaml, now, versions
from siamlab.results.recorder import Recorder
from siamlab.results.store import to_netcdf_file

DIAGNOSTICS_FILE = "diagnostics.nc"
STATUS = "diagnosed"
WHAT = {"h": "h (backbone features)", "z": "z (projector output)", "p": "p (predictor output)"}


@dataclass(frozen=True)
class Provenance:
    """Where the measurements come from, for the attrs.

    Attributes:
        source: the checkpoint, run folder or folder of checkpoints given.
        files: epoch -> checkpoint file.
        formats: the checkpoint format(s) read.
        epoch_from: how the epochs were read (stored / file name / unknown).
        branches: the outputs measured (h, z, p).
        dim: the width d of the judged output (z's, or h's for a backbone-only checkpoint).
        data: the probe sets in words.
        data_fingerprint: which images they are (:mod:`siamlab.data.fingerprint`).
    """

    source: str
    files: dict[int, str]
    formats: str
    epoch_from: str
    branches: tuple[str, ...]
    dim: int
    data: str
    data_fingerprint: str

    @property
    def basis(self) -> str:
        """The branch the verdict judges: z when measured, else h."""
        return "z" if "z" in self.branches else "h"


def _verdict_values(
    measurements: list[Measurement], vcfg: VerdictConfig, basis: str
) -> tuple[list[dict[str, Any]], RunVerdict]:
    """Per epoch: its state, evidence and the run verdict as of it (hysteresis); the last."""
    judged = [(m.epoch, *judge_embeddings(vcfg, m.values, basis, m.epoch)) for m in measurements]
    runs = fold(judged, vcfg)
    values = [
        {
            "verdict": state,
            "verdict_evidence": evidence,
            "run_verdict": run.verdict,
            "run_verdict_onset_epoch": float(run.onset_epoch),
            "run_verdict_evidence": run.evidence,
            "run_verdict_provisional": float(run.provisional),
        }
        for (_, state, evidence), run in zip(judged, runs, strict=True)
    ]
    return values, runs[-1]


def build_dataset(measurements: list[Measurement], cfg: RunConfig, prov: Provenance) -> xr.Dataset:
    """The Dataset of ``measurements`` (sorted by epoch) with the verdict and provenance."""
    measurements = sorted(measurements, key=lambda m: m.epoch)
    vcfg = hold_for(cfg.diagnostics.verdict, len(measurements))
    verdicts, run = _verdict_values(measurements, vcfg, prov.basis)
    recorder = Recorder()
    for m, verdict in zip(measurements, verdicts, strict=True):
        recorder.add(m.epoch, {**m.values, **verdict})
    stamp = now()
    attrs: dict[str, Any] = {
        "study": "",
        "variant": Path(prov.source).name or prov.source,
        "seed": 0,
        "profile": "",
        "status": STATUS,
        "config": config_yaml(cfg),
        "dim": prov.dim,
        "std_reference": 1 / math.sqrt(prov.dim),
        **verdict_attrs(run, STATUS, vcfg),
        "source": prov.source,
        "checkpoints": "\n".join(f"{e}\t{f}" for e, f in sorted(prov.files.items())),
        "checkpoint_format": prov.formats,
        "epoch_from": prov.epoch_from,
        "measured": ", ".join(WHAT[b] for b in prov.branches) + "; eval-mode BN",
        "verdict_branch": prov.basis,
        "verdict_basis": (
            f"{WHAT[prov.basis]}, centred geometry on the test split (embeddings only; "
            f"{' and '.join(NEEDS_LOSS)} need the training loss and are never said)"
        ),
        "data": prov.data,
        "data_fingerprint": prov.data_fingerprint,
        "created": stamp,
        "updated": stamp,
        **versions(),
    }
    return recorder.to_dataset(attrs)


def write_diagnostics(folder: str | Path, ds: xr.Dataset) -> Path:
    """Write ``ds`` to ``folder/diagnostics.nc`` atomically (netCDF4)."""
    path = Path(folder) / DIAGNOSTICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: to_netcdf_file(ds, tmp))
    return path
