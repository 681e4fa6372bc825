"""Refuse to re-run a study over results trained under another config.

``siamlab run`` skips finished runs and resumes the others, so a changed ``--set`` (or
an edited study file) over an existing results folder would otherwise keep the old
finished runs as if they answered the new question: ``--set train.precision=fp32``
over ``auto`` runs would report the fast path's numbers as the exact path's. A resume
under another config is refused by its checkpoint (:func:`siamlab.run.checkpointer.
read_checkpoint`), one run at a time as each comes up; this check compares the asked
config with every run that has results, finished or not, before anything trains, so a
changed ``--set`` or study file does not leave a folder of old and new runs.

Keys that say where results go, when training stops or how the loader hands batches over
(:data:`RESUMABLE`) may differ, and so may ``precision`` / ``channels_last`` when the new
value resolves on the machine that trains to what the run ran (``auto`` is ``fp32`` +
channels_last on an AVX2 CPU). Where that machine is not this one (``--launcher slurm``
on a login node), a changed speed key stays a change. Keys that only one side has (a key
added to siamlab after the run) are not compared.

The images are compared too, for a run whose results record a data fingerprint
(:mod:`siamlab.data.fingerprint`) and that has finished (it would be skipped as done) or
whose ``data.root`` moved: the images the asked config reads are loaded here, once per
set of images, never downloaded. Other images under the same ``data.root`` are a change;
the same in-memory images moved to another ``data.root`` are not (image folders are
fingerprinted by file names, so a moved folder stays a change). An unfinished run's
resume compares the images itself (:func:`siamlab.run.checkpointer.check_same_data`).
Where the images cannot be read here (a login node without the data), a finished run
with an unchanged ``data.root`` is skipped as before.

Not checked here: the same asked config resolving otherwise on another machine (``auto``
moved from a CPU to a GPU); the checkpoint's check compares resolved configs and refuses
such a resume.
"""

import json
from typing import Any

import torch

from siamlab.config.study import RunSpec
from siamlab.data.build import fingerprint_of
from siamlab.data.config import DataConfig
from siamlab.data.fingerprint import hashes_pixels, images_config, same_images
from siamlab.errors import ConfigError, DataError, ResultsError
from siamlab.provenance import config_diff
from siamlab.results.runinfo import FINISHED, run_config
from siamlab.results.store import open_run
from siamlab.run.checkpointer import DATA_WHERE, RESUMABLE
from siamlab.train.speed import precision_label, recorded_precision, resolve_speed

SPEED_KEYS = ("train.precision:", "train.channels_last:")
SHOWN = 8  # runs named in the error, the rest counted
OTHER_IMAGES = "data: other images than it trained on"


def _runs_as(spec: RunSpec) -> str:
    """What ``spec``'s training forward would run as on this machine, e.g. ``fp32+CL``."""
    train = spec.config.train
    cuda = train.device != "cpu" and torch.cuda.is_available()
    resolved = resolve_speed(train, torch.device("cuda" if cuda else "cpu"))
    return precision_label(resolved.precision, resolved.channels_last is True)


class DataCheck:
    """The fingerprint of the images each asked data config reads, loaded once per study start."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}  # images' config JSON -> (fingerprint, error)

    def __call__(self, data: DataConfig) -> tuple[str, str]:
        """(fingerprint, "") of ``data``'s images, or ("", why they could not be read)."""
        dumped = data.model_dump(mode="json")
        key = json.dumps(images_config(dumped), sort_keys=True)
        if key not in self.seen:
            if "download" in dumped:  # never download in the study's process
                data = data.model_copy(
                    update={"dataset": data.dataset.model_copy(update={"download": False})}
                )
            try:
                self.seen[key] = (fingerprint_of(data), "")
            except (DataError, OSError) as exc:
                self.seen[key] = ("", str(exc))
        return self.seen[key]


def _data_changes(
    diffs: list[str], attrs: dict[str, Any], spec: RunSpec, check: DataCheck
) -> list[str]:
    """``diffs`` less a moved ``data.root`` holding the run's images; a note where not.

    The asked images are loaded where a root moved, or where the run has ended (it would
    be skipped as done); an unfinished run's resume compares them itself.
    """
    moved = [d for d in diffs if d.startswith(DATA_WHERE)]
    recorded = str(attrs.get("data_fingerprint", ""))
    if not recorded:  # results from before the fingerprint: a moved root stays a change
        note = "(its results record no data fingerprint to compare the images with)"
        return diffs + [note] if moved else diffs
    if not moved and str(attrs.get("status", "")) not in FINISHED:
        return diffs
    now, error = check(spec.config.data)
    if error:  # the run's own process reports unreadable data; a moved root is unproven
        return diffs + [f"(the images there could not be read here: {error})"] if moved else diffs
    if not same_images(recorded, now):
        return [*diffs, f"{OTHER_IMAGES} (recorded {recorded}; now {now})"]
    if moved and not hashes_pixels(recorded):
        note = "(image files are fingerprinted by their names and sizes, not their pixels: a "
        return [*diffs, note + "moved data.root is not known to hold the same images)"]
    return [d for d in diffs if d not in moved]


def config_changes(
    spec: RunSpec, trains_here: bool = True, check: DataCheck | None = None
) -> list[str]:
    """How ``spec``'s config differs from the one its existing results were trained under.

    Args:
        spec: the run as asked.
        trains_here: this machine trains the run, so a speed key that resolves here to
            what the run ran is no change (False: every changed speed key is one).
        check: the fingerprints of the asked data (a new one loads the data).

    Returns:
        ``key: recorded -> asked`` per differing key, ``data: ...`` when the images
        differ from the recorded fingerprint; [] when the run has no results.
    """
    try:
        attrs = open_run(spec.directory()).attrs
    except ResultsError:
        return []
    asked = spec.config.model_dump(mode="json")
    diffs = [
        d
        for d in config_diff(run_config(attrs.get("config")), asked, shared_only=True)
        if not d.startswith(RESUMABLE)
    ]
    diffs = _data_changes(diffs, dict(attrs), spec, check or DataCheck())
    speed = [d for d in diffs if d.startswith(SPEED_KEYS)]
    if not speed:
        return diffs
    ran = recorded_precision(attrs)  # "" in files older than the attr: kept as a change
    asked_as = _runs_as(spec) if trains_here else ""
    if ran and ran == asked_as:
        return [d for d in diffs if d not in speed]
    if ran:  # what ran beside what the asked value is, so the user can match it
        here = f", the asked config trains as {asked_as} here" if asked_as else ""
        diffs.append(f"(it trained as {ran}{here})")
    return diffs


def refuse_changed_runs(runs: list[RunSpec], trains_here: bool = True) -> None:
    """Raise, before anything trains, when any of ``runs`` has results of another config.

    Args:
        runs: the runs asked for.
        trains_here: this machine trains them (see :func:`config_changes`).

    Raises:
        ConfigError: names each such run and its differing keys, and the ways out.
    """
    check = DataCheck()
    changed = [
        (spec, diffs) for spec in runs if (diffs := config_changes(spec, trains_here, check))
    ]
    if not changed:
        return
    lines = [
        f"  {spec.variant}/seed{spec.seed}: " + "; ".join(diffs) for spec, diffs in changed[:SHOWN]
    ]
    if len(changed) > SHOWN:
        lines.append(f"  ... and {len(changed) - SHOWN} more run(s)")
    keys = {d.split(":")[0] for _, diffs in changed for d in diffs if not d.startswith("(")}
    ways = [
        "To train the asked config beside them: --set output.root=A_NEW_FOLDER. To replace "
        "them: delete those run folders. To keep them: drop the changed --set (or the edit "
        "of the study file)."
    ]
    images = any(d.startswith(OTHER_IMAGES) for _, diffs in changed for d in diffs)
    if images:
        ways.append("Other images: point data.root at the images those runs trained on.")
    study = runs[0].directory().parent.parent
    if all(k.startswith("diagnostics.verdict.") for k in keys):
        ways.append(
            f"Verdict thresholds alone: siamlab rejudge {study} --set "
            "diagnostics.verdict.KEY=VALUE judges the recorded runs again without training."
        )
    what = (
        "another config or other images than asked for"
        if images
        else ("another config than the one asked for")
    )
    raise ConfigError(
        f"{study} holds {len(changed)} run(s) trained under {what} (recorded -> asked); "
        "nothing was run:\n" + "\n".join(lines + ways)
    )
