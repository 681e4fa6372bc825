"""A re-run over results of another config is refused before anything trains."""

import hashlib

import pytest

from siamlab.errors import ConfigError
from siamlab.launch.plan import pending_runs
from siamlab.provenance import config_diff
from siamlab.results.store import open_run
from siamlab.study.changed_config import config_changes
from siamlab.study.execute import run_study
from tests.conftest import tiny_runs

TWO_STEPS = ["train.max_steps=2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The root of a tiny study whose two variants finished under the default config."""
    root = tmp_path_factory.mktemp("changed")
    runs = tiny_runs(root, variants={"a": {}, "b": {}}, sets=TWO_STEPS)
    assert [r.status for r in run_study(runs, progress=False, log=lambda _: None)] == [
        "finished",
        "finished",
    ]
    return root


def _digest(runs):
    return [hashlib.sha256((s.directory() / "metrics.nc").read_bytes()).hexdigest() for s in runs]


def shared_diff(old, new):
    return config_diff(old, new, shared_only=True)


def test_shared_diff_compares_only_the_keys_both_configs_have():
    old = {"optim": {"lr": 0.1, "wd": 1e-4}, "gone": 1}
    new = {"optim": {"lr": 0.2, "wd": 1e-4, "added": True}, "train": {"epochs": 3}}
    assert shared_diff(old, new) == ["optim.lr: 0.1 -> 0.2"]
    assert shared_diff(new, new) == []


def test_a_changed_key_over_finished_runs_is_refused_and_nothing_trains(finished):
    runs = tiny_runs(finished, variants={"a": {}, "b": {}}, sets=[*TWO_STEPS, "optim.base_lr=0.5"])
    before = _digest(runs)
    with pytest.raises(ConfigError) as err:
        run_study(runs, progress=False, log=lambda _: None)
    message = str(err.value)
    assert "holds 2 run(s) trained under another config" in message
    assert "a/seed0: optim.base_lr: 0.1 -> 0.5" in message
    assert "b/seed0: optim.base_lr: 0.1 -> 0.5" in message
    assert "--set output.root=" in message and "rejudge" not in message
    with pytest.raises(ConfigError, match="optim.base_lr"):  # the launchers ask the same
        pending_runs(runs, log=lambda _: None)
    assert _digest(runs) == before  # the old results are untouched


def test_a_variant_edited_alone_names_only_its_runs(finished):
    runs = tiny_runs(finished, variants={"a": {}, "b": {"optim": {"base_lr": 0.3}}}, sets=TWO_STEPS)
    assert config_changes(runs[0]) == []
    assert config_changes(runs[1]) == ["optim.base_lr: 0.1 -> 0.3"]


def test_verdict_thresholds_alone_point_to_rejudge(finished):
    runs = tiny_runs(
        finished,
        variants={"a": {}, "b": {}},
        sets=[*TWO_STEPS, "diagnostics.verdict.collapsed_residual_norm=0.3"],
    )
    with pytest.raises(ConfigError, match="siamlab rejudge .*tiny --set diagnostics.verdict"):
        run_study(runs, progress=False, log=lambda _: None)


def test_where_results_go_and_when_training_stops_may_change(finished):
    runs = tiny_runs(
        finished, variants={"a": {}, "b": {}}, sets=[*TWO_STEPS, "train.stop_on_collapse=true"]
    )
    assert [config_changes(s) for s in runs] == [[], []]
    reports = run_study(runs, progress=False, log=lambda _: None)
    assert [r.status for r in reports] == ["skipped", "skipped"]


def test_a_precision_that_resolves_to_what_ran_is_the_same_run(finished):
    """``auto`` against the precision and layout it resolved to here: not a change."""
    first = tiny_runs(finished, variants={"a": {}}, sets=TWO_STEPS)[0]
    attrs = open_run(first.directory()).attrs
    layout = "true" if attrs["channels_last"] == 1 else "false"
    same = [f"train.precision={attrs['precision']}", f"train.channels_last={layout}"]
    runs = tiny_runs(finished, variants={"a": {}}, sets=[*TWO_STEPS, *same])
    assert config_changes(runs[0]) == []
    ran = attrs["precision"] + "+CL" * (layout == "true")
    # where another machine trains (a Slurm node), what resolves here decides nothing
    assert config_changes(runs[0], trains_here=False) == [
        f"train.channels_last: 'auto' -> {layout == 'true'!r}",
        f"train.precision: 'auto' -> {attrs['precision']!r}",
        f"(it trained as {ran})",
    ]
    other = "fp32" if attrs["precision"] == "bf16" else "bf16"
    as_other = "bf16+CL" if other == "bf16" else "fp32"  # an explicit fp32: channels_last off
    runs = tiny_runs(finished, variants={"a": {}}, sets=[*TWO_STEPS, f"train.precision={other}"])
    assert config_changes(runs[0]) == [
        f"train.precision: 'auto' -> {other!r}",
        f"(it trained as {ran}, the asked config trains as {as_other} here)",
    ]
