"""train.precision=auto: the quick profile's fast path, resolved per device, recorded per run."""

import pytest
import torch
from typer.testing import CliRunner

import siamlab.train.speed as speed
from siamlab.cli.app import app
from siamlab.config.study import StudyFile, expand_study
from siamlab.results.store import open_run, open_study
from siamlab.train.config import TrainConfig
from siamlab.train.speed import prepare_model, resolve_speed, speed_label
from tests.conftest import TINY

CPU = torch.device("cpu")
runner = CliRunner()


@pytest.mark.parametrize(
    ("precision", "layout", "native", "want"),
    [
        ("auto", "auto", True, ("bf16", True)),
        ("auto", "auto", False, ("fp32", True)),  # a CPU without bf16: NHWC fp32 kernels
        ("auto", False, True, ("bf16", False)),  # a layout asked for explicitly is kept
        ("fp32", "auto", True, ("fp32", False)),  # the exact path: one --set
        ("bf16", "auto", False, ("bf16", True)),  # bf16 asked for is kept, even if emulated
        ("fp32", True, True, ("fp32", True)),
    ],
)
def test_auto_resolves_by_device_support(monkeypatch, precision, layout, native, want):
    monkeypatch.setattr(speed, "bf16_supported", lambda device: native)
    cfg = resolve_speed(TrainConfig(precision=precision, channels_last=layout), CPU)
    assert (cfg.precision, cfg.channels_last) == want
    assert speed_label(cfg) == want[0] + "+CL" * want[1]


@pytest.mark.parametrize(("native", "want"), [(True, ("bf16", True)), (False, ("fp32", False))])
def test_auto_on_cuda_keeps_fp32_contiguous(monkeypatch, native, want):
    """NHWC fp32 is measured faster on CPUs only; a GPU without bf16 keeps NCHW."""
    monkeypatch.setattr(speed, "bf16_supported", lambda device: native)
    cfg = resolve_speed(TrainConfig(precision="auto", channels_last="auto"), torch.device("cuda"))
    assert (cfg.precision, cfg.channels_last) == want


def test_unresolved_auto_never_reaches_the_model():
    with pytest.raises(ValueError, match="resolve_speed"):
        prepare_model(torch.nn.Linear(2, 2), TrainConfig(precision="auto"), CPU)


def test_quick_profile_is_auto_and_one_set_is_the_exact_path():
    study = StudyFile(name="s", variants={"default": {}})
    fast = expand_study(study)[0].config.train
    exact = expand_study(study, sets=["train.precision=fp32"])[0].config.train
    assert (fast.precision, fast.channels_last) == ("auto", "auto")
    assert (
        resolve_speed(exact, CPU).model_dump()
        == TrainConfig(**{**exact.model_dump(), "channels_last": False}).model_dump()
    )
    assert (TrainConfig().precision, TrainConfig().channels_last) == ("fp32", False)


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_a_run_records_and_prints_what_it_ran(tmp_path, precision):
    sets = [*TINY, f"output.root={tmp_path}", "train.max_steps=2", f"train.precision={precision}"]
    study = tmp_path / "p.yaml"
    study.write_text("name: p\nvariants: {default: {}}\n")
    args = ["run", str(study), "--no-progress", *(a for s in sets for a in ("--set", s))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ran = resolve_speed(TrainConfig(precision=precision, channels_last="auto"), CPU)
    attrs = open_run(tmp_path / "p" / "default" / "seed0").attrs
    assert attrs["precision"] == ran.precision and attrs["channels_last"] == int(ran.channels_last)
    printed = " ".join(result.output.split())  # the console wraps long lines
    assert f"precision: {speed_label(ran)} (1 run)" in printed
    if speed_label(ran) == "fp32":  # already the exact path: no advice to take it
        assert "fp32 (1 run), the exact path" in printed
        assert "--set train.precision=fp32" not in printed
    else:
        assert "the exact path: --set train.precision=fp32" in printed
    assert f"precision: {precision}" in attrs["config"]  # the config keeps what was asked
    assert open_study(tmp_path / "p")["precision"].item() == ran.precision


def test_compare_notes_runs_that_trained_at_different_precisions(tmp_path):
    from siamlab.results.run_notes import run_notes
    from siamlab.results.store import write_run
    from tests.conftest import make_run

    for seed, ran in ((0, "bf16"), (1, "fp32"), (2, "")):  # "": a file from before the attr
        make_run(tmp_path, "good", seed)
        run_dir = tmp_path / "toy" / "good" / f"seed{seed}"
        ds = open_run(run_dir)
        if ran:
            ds.attrs["precision"] = ran
        write_run(run_dir, ds)
    notes = run_notes(open_study(tmp_path / "toy"))
    assert "different precisions (bf16: good/seed0; fp32: good/seed1)" in " ".join(notes)
    ds = open_run(tmp_path / "toy" / "good" / "seed1")
    ds.attrs["precision"] = "bf16"
    write_run(tmp_path / "toy" / "good" / "seed1", ds)
    assert not any("precision" in n for n in run_notes(open_study(tmp_path / "toy")))
    ds = open_run(tmp_path / "toy" / "good" / "seed1")
    ds.attrs["channels_last"] = 1  # the same precision in NHWC: other float rounding
    write_run(tmp_path / "toy" / "good" / "seed1", ds)
    notes = " ".join(run_notes(open_study(tmp_path / "toy")))
    assert "different precisions (bf16: good/seed0; bf16+CL: good/seed1)" in notes


@pytest.mark.parametrize(
    ("ran", "says"),
    [
        (["fp32", "fp32"], "precision: fp32 (2 runs), the exact path; CPU threads: 2 (2 runs)"),
        (["bf16+CL", "bf16+CL"], "; the exact path: --set train.precision=fp32"),
        (["bf16+CL", "fp32+CL"], "fp32 --set train.channels_last=false"),
    ],
)
def test_the_summary_gives_the_way_to_the_exact_path_only_to_runs_off_it(ran, says, capsys):
    from siamlab.cli.run import _report
    from siamlab.study.execute import StudyReport

    _report([StudyReport(f"r{i}", "done", {}, precision=p, threads=2) for i, p in enumerate(ran)])
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert says in printed
    assert ("bf16 = autocast" in printed) == ("bf16+CL" in ran)
