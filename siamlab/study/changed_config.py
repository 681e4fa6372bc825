"""Refuse to re-run a study over results trained under another config.

``siamlab run`` skips finished runs and resumes the others, so a changed ``--set`` (or
an edited study file) over an existing results folder would otherwise keep the old
finished runs as if they answered the new question: ``--set train.precision=fp32``
over ``auto`` runs would report the fast path's numbers as the exact path's. A resume
under another config is refused by its checkpoint (:func:`siamlab.run.checkpointer.
read_checkpoint`), one run at a time as each comes up; this check compares the asked
config with every run that has results, finished or not, before anything trains, so a
changed ``--set`` or study file does not leave a folder of old and new runs.

Keys that say where results go or when training stops (:data:`RESUMABLE`) may differ,
and so may ``precision`` / ``channels_last`` when the new value resolves on the machine
that trains to what the run ran (``auto`` is ``fp32`` + channels_last on an AVX2 CPU).
Where that machine is not this one (``--launcher slurm`` on a login node), a changed
speed key stays a change. Keys that only one side has (a key added to siamlab after the
run) are not compared. Not checked here: the same asked config resolving otherwise on
another machine (``auto`` moved from a CPU to a GPU); the checkpoint's check compares
resolved configs and refuses such a resume.
"""

import torch

from siamlab.config.study import RunSpec
from siamlab.errors import ConfigError, ResultsError
from siamlab.provenance import config_diff
from siamlab.results.runinfo import run_config
from siamlab.results.store import open_run
from siamlab.run.checkpointer import RESUMABLE
from siamlab.train.speed import precision_label, recorded_precision, resolve_speed

SPEED_KEYS = ("train.precision:", "train.channels_last:")
SHOWN = 8  # runs named in the error, the rest counted


def _runs_as(spec: RunSpec) -> str:
    """What ``spec``'s training forward would run as on this machine, e.g. ``fp32+CL``."""
    train = spec.config.train
    cuda = train.device != "cpu" and torch.cuda.is_available()
    resolved = resolve_speed(train, torch.device("cuda" if cuda else "cpu"))
    return precision_label(resolved.precision, resolved.channels_last is True)


def config_changes(spec: RunSpec, trains_here: bool = True) -> list[str]:
    """How ``spec``'s config differs from the one its existing results were trained under.

    Args:
        spec: the run as asked.
        trains_here: this machine trains the run, so a speed key that resolves here to
            what the run ran is no change (False: every changed speed key is one).

    Returns:
        ``key: recorded -> asked`` per differing key; [] when the run has no results.
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
    changed = [(spec, diffs) for spec in runs if (diffs := config_changes(spec, trains_here))]
    if not changed:
        return
    lines = [
        f"  {spec.variant}/seed{spec.seed}: " + "; ".join(diffs) for spec, diffs in changed[:SHOWN]
    ]
    if len(changed) > SHOWN:
        lines.append(f"  ... and {len(changed) - SHOWN} more run(s)")
    keys = {d.split(":")[0] for _, diffs in changed for d in diffs}
    ways = [
        "To train the asked config beside them: --set output.root=A_NEW_FOLDER. To replace "
        "them: delete those run folders. To keep them: drop the changed --set (or the edit "
        "of the study file)."
    ]
    study = runs[0].directory().parent.parent
    if all(k.startswith("diagnostics.verdict.") for k in keys):
        ways.append(
            f"Verdict thresholds alone: siamlab rejudge {study} --set "
            "diagnostics.verdict.KEY=VALUE judges the recorded runs again without training."
        )
    raise ConfigError(
        f"{study} holds {len(changed)} run(s) trained under another config than the one "
        "asked for (recorded -> asked); nothing was run:\n" + "\n".join(lines + ways)
    )
