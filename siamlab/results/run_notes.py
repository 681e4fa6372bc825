"""Notes on how the compared runs were run, which ``siamlab compare`` and the plots print.

Runs still running or missing, seeds of one variant with different configs, verdicts
judged with thresholds other than today's defaults (``siamlab rejudge`` judges them
again), runs trained on different images (their data fingerprints), and runs trained
at different precisions or, on CPUs, thread counts.
"""

from collections.abc import Mapping
from typing import Any

import xarray as xr

from siamlab.data.fingerprint import HAND_OVER, digest, images_config
from siamlab.results.runinfo import FINISHED, last_epoch, run_config, run_exists


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# keys that say where a run's results go or how its loader hands batches over, not what
# it computes (seeds of one variant trained into two output roots and copied together
# are not mixed settings)
WHERE_ONLY = ("output.", *(f"data.{key}" for key in HAND_OVER))
DATA_ROOT = "data.root"  # where the images are: a mixed setting unless they are the same


def _digests(ds: xr.Dataset, variant: Any, seeds: list[int]) -> set[str]:
    """The data fingerprints' digests of a variant's runs ("" for a file without one)."""
    if "data_fingerprint" not in ds.data_vars:
        return {""}
    values = (str(ds["data_fingerprint"].sel(variant=variant, seed=s).item()) for s in seeds)
    return {digest(v) for v in values}


def config_conflicts(ds: xr.Dataset) -> list[str]:
    """One message per variant whose seeds ran with different configs (differing keys).

    Keys under :data:`WHERE_ONLY` may differ, and ``data.root`` where every seed's
    fingerprint names the same images.
    """
    exists = run_exists(ds)
    out = []
    for variant in ds["variant"].values:
        runs = {
            int(seed): _flatten(run_config(ds["config"].sel(variant=variant, seed=seed).item()))
            for seed in ds["seed"].values
            if exists.sel(variant=variant, seed=seed)
        }
        digests = _digests(ds, variant, list(runs))
        where = (*WHERE_ONLY, DATA_ROOT) if len(digests) == 1 and "" not in digests else WHERE_ONLY
        keys = sorted({k for cfg in runs.values() for k in cfg})
        diff = [
            k
            for k in keys
            if not k.startswith(where) and len({repr(cfg.get(k)) for cfg in runs.values()}) > 1
        ]
        if diff:
            shown = "; ".join(
                f"{k}: " + ", ".join(f"seed{s}={cfg.get(k)!r}" for s, cfg in runs.items())
                for k in diff[:3]
            )
            more = f" (+{len(diff) - 3} more keys)" if len(diff) > 3 else ""
            out.append(
                f"variant {variant} mixes configs across seeds, so its mean ± std pools "
                f"different settings: {shown}{more}"
            )
    return out


def threshold_notes(ds: xr.Dataset) -> list[str]:
    """A message when runs were judged with verdict thresholds other than today's defaults.

    Each run's config records the thresholds its verdict was judged with; after a
    recalibration (or a study's own choice) a verdict can differ from what today's
    defaults say, which ``siamlab rejudge`` shows without training.
    """
    from siamlab.diagnostics.config import VerdictConfig  # torch-free

    today = VerdictConfig().model_dump()
    exists = run_exists(ds)
    differ: dict[str, set[str]] = {}
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            if not exists.sel(variant=variant, seed=seed):
                continue
            config = run_config(ds["config"].sel(variant=variant, seed=seed).item())
            given = (config.get("diagnostics") or {}).get("verdict") or {}
            for key, value in given.items():
                if key in today and value != today[key]:
                    differ.setdefault(key, set()).add(repr(value))
    if not differ:
        return []
    shown = ", ".join(f"{k} {'/'.join(sorted(v))} (today {today[k]!r})" for k, v in differ.items())
    return [
        f"verdicts judged with thresholds other than today's defaults: {shown}; "
        "siamlab rejudge STUDY_DIR judges them again without training"
    ]


def run_notes(ds: xr.Dataset) -> list[str]:
    """Messages on partial, diverged, failed or missing runs and on mixed configs."""
    exists, done = run_exists(ds), last_epoch(ds)
    notes = []
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            name = f"{variant}/seed{seed}"
            if not exists.sel(variant=variant, seed=seed):
                if exists.sel(variant=variant).any():
                    notes.append(f"{name} has no results: the variant's numbers use fewer seeds")
                continue
            status = str(ds["status"].sel(variant=variant, seed=seed).item())
            if status == "finished":
                continue
            cfg = run_config(ds["config"].sel(variant=variant, seed=seed).item())
            planned = cfg.get("train", {}).get("epochs", "?")
            epoch = int(done.sel(variant=variant, seed=seed))
            progress = f"at epoch {epoch} of {planned}"
            if status in FINISHED:  # stopped on collapse: ended as asked, early
                notes.append(f"{name} stopped on collapse {progress}; 'final' = that epoch's")
                continue
            what = {"running": "is still running (or was stopped)", "diverged": "diverged"}
            notes.append(f"{name} {what.get(status, status)} {progress}; 'final' = its latest")
    conflicts = config_conflicts(ds) + data_conflicts(ds) + precision_conflicts(ds)
    return notes + conflicts + threshold_notes(ds)


def _runs_by(ds: xr.Dataset, name: str, cpu_only: bool = False) -> dict[str, list[str]]:
    """The existing runs grouped by the value of the per-run variable ``name``.

    ``""`` and NaN (a file without the attr) are left out; ``cpu_only``: only the runs
    whose ``device`` is cpu.
    """
    if name not in ds.data_vars or (cpu_only and "device" not in ds.data_vars):
        return {}
    exists = run_exists(ds)
    groups: dict[str, list[str]] = {}
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            run = {"variant": variant, "seed": seed}
            value = ds[name].sel(run).item()
            if cpu_only and str(ds["device"].sel(run).item()) != "cpu":
                continue
            label = f"{value:g}" if isinstance(value, float) else str(value)
            if exists.sel(run) and label not in ("", "nan"):
                groups.setdefault(label, []).append(f"{variant}/seed{seed}")
    return groups


def _listed(groups: dict[str, list[str]]) -> str:
    def order(label: str) -> tuple[int, float | str]:  # counts by number, "10" after "2"
        return (0, float(label)) if label.replace(".", "", 1).isdigit() else (1, label)

    return "; ".join(f"{g}: {', '.join(groups[g])}" for g in sorted(groups, key=order))


def data_conflicts(ds: xr.Dataset) -> list[str]:
    """A message when runs that asked for the same images trained on different ones.

    Runs are grouped by their data config less its root and the keys that do not say
    which images (:data:`~siamlab.data.fingerprint.NOT_IMAGES`), so a study that varies
    its data on purpose is not noted; within a group, configs that agree can still have
    read other images (another file under the same ``data.root``, another
    ``SIAMLAB_DATA``). Files without the fingerprint say nothing.
    """
    if "data_fingerprint" not in ds.data_vars:
        return []
    exists = run_exists(ds)
    asked: dict[str, dict[str, list[str]]] = {}  # images' config -> fingerprint -> runs
    for variant in ds["variant"].values:
        for seed in ds["seed"].values:
            run = {"variant": variant, "seed": seed}
            fingerprint = str(ds["data_fingerprint"].sel(run).item())
            if not exists.sel(run) or fingerprint in ("", "nan"):
                continue
            data = run_config(ds["config"].sel(run).item()).get("data") or {}
            images = {k: v for k, v in images_config(data).items() if k != "root"}
            key = repr(sorted(images.items()))
            asked.setdefault(key, {}).setdefault(fingerprint, []).append(f"{variant}/seed{seed}")
    return [
        f"runs asked for the same images but trained on different ones ({_listed(groups)}): "
        "differences mix the data with the method"
        for groups in asked.values()
        if len(groups) > 1
    ]


def precision_conflicts(ds: xr.Dataset) -> list[str]:
    """A message when the runs trained at different precisions or CPU thread counts.

    A config's ``train.precision: auto`` is bf16 on one machine and fp32 on another, so
    configs that agree can still have run differently; runs in channels_last (``+CL``)
    count as another precision, as their convolution kernels round otherwise. On a CPU
    the thread count (``threads``, with ``device`` cpu) changes the float rounding of every step, as
    ``--launcher local --jobs N`` does by giving each run cores // N threads; a run
    resumed on another count (``threads_history``) is noted too. Files without these
    attrs say nothing.
    """
    notes = []
    precision = _runs_by(ds, "precision")
    nhwc = set(_runs_by(ds, "channels_last").get("1", []))  # its kernels round otherwise
    if nhwc:
        labelled: dict[str, list[str]] = {}
        for label, names in precision.items():
            for run in names:
                labelled.setdefault(label + "+CL" * (run in nhwc), []).append(run)
        precision = labelled
    if len(precision) > 1:
        notes.append(
            f"the runs trained at different precisions ({_listed(precision)}): differences mix both"
        )
    threads = _runs_by(ds, "threads", cpu_only=True)
    if len(threads) > 1:
        notes.append(
            f"the CPU runs trained on different thread counts ({_listed(threads)}): a CPU's "
            "kernels split their sums by thread, so their float rounding differs too"
        )
    history = _runs_by(ds, "threads_history", cpu_only=True)
    if history:
        runs = "; ".join(f"{run} ({spans})" for spans, rs in history.items() for run in rs)
        notes.append(
            f"runs resumed on another CPU thread count, so not bit for bit what one "
            f"uninterrupted run gives: {runs}"
        )
    return notes
