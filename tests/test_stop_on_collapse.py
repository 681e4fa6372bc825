"""train.stop_on_collapse: a collapsing run ends at its collapse, is skipped, resumes exactly."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import xarray as xr
import yaml
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.config.validation import validate_config
from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict import VerdictJudge
from siamlab.errors import ConfigError
from siamlab.results.runstate import read_state
from siamlab.results.store import open_run
from siamlab.run.collapse_stop import collapse_stop
from siamlab.run.train_run import train_run
from siamlab.study.status import study_status
from siamlab.train.checkpoint import load_checkpoint
from siamlab.train.distributed import DistInfo
from tests.conftest import TINY, tiny_runs

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

# Without stop-gradient and without BN on z, the tiny digits run collapses in a few steps:
# z's residual around its centre falls from 0.20 (epoch 1) to 0.14-0.17 (epochs 2-4)
# while the loss goes from -0.40 to -0.98. The residual threshold is raised to 0.18 to
# call that complete collapse; with hold 2 the verdict enters it at epoch 3 of 4.
COLLAPSING = [
    "train.epochs=4",
    "optim.base_lr=2.0",
    "model.projector.bn_output=false",
    "diagnostics.hooks=[loss,batch_geometry,eval_std,centred,verdict]",
    "diagnostics.verdict.hold_evaluations=2",
    "diagnostics.verdict.collapsed_residual_norm=0.18",
    "diagnostics.verdict.unstable_noise_ratio=1000",
    "diagnostics.verdict.start_steps=2",
]
NO_STOP_GRAD = {"objective": {"stop_grad": False}}


def _cli(tmp_path: Path, *extra: str) -> tuple[int, str]:
    """``siamlab run`` of the collapsing study with stop_on_collapse, in this process."""
    study = tmp_path / "collapse.yaml"
    study.write_text(yaml.safe_dump({"name": "tiny", "variants": {"nsg": NO_STOP_GRAD}}))
    sets = [*TINY, f"output.root={tmp_path / 'out'}", *COLLAPSING, "train.stop_on_collapse=true"]
    args = ["run", str(study), "--no-progress", *(a for s in sets for a in ("--set", s))]
    result = runner.invoke(app, [*args, *extra])
    return result.exit_code, result.output


def _entered_collapse(ds: xr.Dataset) -> int:
    """The first epoch whose run verdict is collapsed and no longer provisional."""
    entered = (ds["run_verdict"] == "collapsed") & (ds["run_verdict_provisional"] == 0)
    return int(ds["epoch"][entered.values.argmax()]) if entered.any() else 0


def test_a_collapsing_run_stops_is_skipped_then_resumes_to_an_uninterrupted_run(tmp_path):
    reference = train_run(
        tiny_runs(tmp_path / "ref", variants={"nsg": NO_STOP_GRAD}, sets=COLLAPSING)[0],
        progress=False,
    )
    ref = open_run(reference.directory)
    assert reference.status == "finished" and ref.sizes["epoch"] == 4  # default: no stop
    onset = _entered_collapse(ref)
    assert 1 <= onset < 4, ref["run_verdict"].values

    code, out = _cli(tmp_path)
    assert code == 0, out
    assert "stopped_collapsed" in out and "stopped early" in out
    run_dir = tmp_path / "out" / "tiny" / "nsg" / "seed0"
    with xr.open_dataset(run_dir / "metrics.nc") as ds:  # a complete, valid file
        ds = ds.load()
    assert ds.attrs["status"] == "stopped_collapsed"
    assert ds.sizes["epoch"] == onset < 4  # it ended with the epoch that entered collapse
    assert ds.attrs["verdict"] == "collapsed" and ds.attrs["verdict_provisional"] == 0
    assert ds.attrs["verdict_onset_epoch"] <= onset
    checkpoint = load_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None and checkpoint["step"] == ds.sizes["step"]
    for name in ("loss", "epoch_loss", "z_residual_norm", "run_verdict"):  # the same run so far
        dim = ds[name].dims[0]
        xr.testing.assert_equal(ds[name], ref[name].sel({dim: ds[dim]}))
    assert read_state(run_dir).state == "stopped_collapsed"
    (row,) = study_status(tmp_path / "out" / "tiny")
    assert (row.state, row.verdict, row.step) == (
        "stopped_collapsed",
        "collapsed",
        ds.sizes["step"],
    )
    shown = runner.invoke(app, ["status", str(tmp_path / "out" / "tiny")])
    assert shown.exit_code == 0 and "stopped_collapsed" in shown.output, shown.output

    code, out = _cli(tmp_path)  # re-running treats it as done
    assert code == 0, out
    assert "stopped on collapse earlier, skipped" in out and "stopped_collapsed" in out
    assert open_run(run_dir).attrs["updated"] == ds.attrs["updated"]

    code, out = _cli(tmp_path, "--resume-stopped")  # trains it on to its last epoch
    assert code == 0, out
    resumed = open_run(run_dir)
    assert resumed.attrs["status"] == "finished" and resumed.sizes["epoch"] == 4
    assert resumed.attrs["verdict"] == ref.attrs["verdict"]
    for name in ("loss", "epoch_loss", "z_residual_norm", "verdict", "run_verdict"):
        xr.testing.assert_equal(resumed[name], ref[name])
    weights = load_checkpoint(run_dir / "checkpoints")["model"]
    for key, value in load_checkpoint(reference.directory / "checkpoints")["model"].items():
        assert torch.equal(weights[key], value), key


def _judge_epoch(judge: VerdictJudge, epoch: int, losses: list[float], residual: float | None):
    """Feed one epoch's step losses and, unless ``residual`` is None, an evaluation."""
    for i, loss in enumerate(losses):
        judge.summarise("step", 4 * (epoch - 1) + i + 1, {"loss": loss})
    values = {"epoch_loss": sum(losses) / len(losses)}
    if residual is not None:
        values |= {"z_std_eval": 0.1, "z_residual_norm": residual}
        values["z_residual_erank_fraction"] = 0.5
    judge.summarise("epoch", epoch, values)


def test_the_stop_is_on_entering_collapse_not_on_being_collapsed():
    judge = VerdictJudge(VerdictConfig(hold_evaluations=2, start_steps=2))
    stop = collapse_stop(SimpleNamespace(hooks=[judge]), DistInfo())  # type: ignore[arg-type]
    falling, low = [-0.5, -0.6, -0.7, -0.8], [-0.9] * 4  # start -0.55: -0.9 is 78% of the way
    asked = []
    for epoch, (losses, residual) in enumerate(
        [(falling, 0.5), (low, 0.01), (low, 0.01), (low, None), (low, 0.01)], start=1
    ):
        _judge_epoch(judge, epoch, losses, residual)
        asked.append((judge.run.verdict, judge.run.provisional, stop()))
    assert asked == [
        ("healthy", True, False),
        ("collapsed", True, False),  # one collapsed evaluation of the two that enter it
        ("collapsed", False, True),  # entered: stop here
        ("collapsed", False, False),  # no evaluation
        ("collapsed", False, False),  # collapsed still: a resumed run trains on
    ]
    restored = VerdictJudge(judge.cfg)
    restored.load_state_dict(judge.state_dict())
    assert restored.run == judge.run and restored.run.onset_epoch == 2 and not restored.entered


def test_stop_on_collapse_needs_the_verdict_hooks():
    assert not validate_config({}).train.stop_on_collapse  # off by default
    bare = {"train": {"stop_on_collapse": True}, "diagnostics": {"hooks": ["loss", "verdict"]}}
    with pytest.raises(ConfigError, match="stop_on_collapse.*eval_std, centred"):
        validate_config(bare)
