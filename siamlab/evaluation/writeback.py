"""Record evaluation results in a run's ``metrics.nc`` as dimensionless ``eval_*`` variables.

Each variable holds one number (a fraction in [0, 1]) with ``long_name`` and ``units`` from
:mod:`siamlab.evaluation.variables` and attrs ``recipe`` (optimizer, lr, epochs, batch,
k, T, ...), ``data`` (which samples, which transform), ``path`` (linear probe: ``fast`` or
``augmented``), ``checkpoint`` (file and format) and ``evaluated`` (UTC time).

The file is read, extended and replaced atomically (temp file + fsync + rename), under an
flock on ``<run>/.eval.lock`` so that concurrent evaluations of one run do not lose each
other's variables. A training
run rewrites ``metrics.nc`` from its recorder at every checkpoint, which would drop these
variables, so only finished runs are written to. Re-running an evaluation overwrites the
variables it writes (the attrs say which recipe produced the current values).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xarray as xr

from siamlab.errors import ResultsError
from siamlab.provenance import now, versions
from siamlab.results.schema import spec
from siamlab.results.store import METRICS_FILE, open_run, write_run


def eval_variable(name: str, value: float, attrs: dict[str, Any]) -> xr.DataArray:
    """A 0-d variable with the schema's ``long_name``/``units`` and string-valued attrs."""
    vs = spec(name)
    da = xr.DataArray(float(value))
    da.attrs = {"long_name": vs.long_name, "units": vs.units, **vs.extra}
    da.attrs.update({k: str(v) for k, v in attrs.items()})
    return da


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.eval.lock`` (waiting for another evaluation to finish its write)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(run_dir / ".eval.lock", "a")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise ResultsError(f"cannot write to {run_dir}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def write_eval(
    run_dir: str | Path,
    values: dict[str, float],
    attrs: dict[str, Any],
    new_file_attrs: dict[str, Any] | None = None,
) -> Path:
    """Add (or overwrite) ``eval_*`` variables in ``run_dir/metrics.nc`` atomically.

    Args:
        run_dir: the run folder (or any folder, for a checkpoint that belongs to no run).
        values: variable name (``eval_...``, in the schema) -> value.
        attrs: attrs shared by these variables (recipe, data, path, checkpoint).
        new_file_attrs: dataset attrs when ``metrics.nc`` does not exist yet (it is then
            created holding only the eval variables).

    Returns:
        The path written.

    Raises:
        ValueError: a name without the ``eval_`` prefix.
        ResultsError: an unreadable existing file or an unwritable folder.
    """
    bad = [n for n in values if not n.startswith("eval_")]
    if bad:
        raise ValueError(f"evaluation variables must start with 'eval_', got {bad}")
    run_dir = Path(run_dir)
    stamp = {**attrs, "evaluated": now()}
    with _run_lock(run_dir):
        if (run_dir / METRICS_FILE).is_file():
            ds = open_run(run_dir)
        else:
            ds = xr.Dataset(attrs={**versions(), "created": now(), **(new_file_attrs or {})})
        for name, value in values.items():
            ds[name] = eval_variable(name, value, stamp)
        return write_run(run_dir, ds)
