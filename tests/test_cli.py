from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.config.study import expand_study, read_study

STUDY_DIR = Path(__file__).resolve().parents[1] / "studies"
STUDIES = sorted(STUDY_DIR.glob("*.yaml"))
runner = CliRunner()


def test_every_study_file_validates():
    assert STUDIES
    for path in STUDIES:
        for profile in ("quick", "cifar10", "imagenet"):
            assert expand_study(read_study(path), profile=profile)
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 0, result.output


def test_bad_key_exits_2_with_a_suggestion():
    result = runner.invoke(app, ["validate", str(STUDIES[0]), "--set", "optim.bse_lr=1"])
    assert result.exit_code == 2
    assert "did you mean 'optim.base_lr'" in result.output
    assert "Traceback" not in result.output


def test_unknown_predictor_key_exits_2_listing_the_mlp_keys_and_trains_nothing(tmp_path):
    sets = ["model.predictor.made_up=1", "train.epochs=1", f"output.root={tmp_path}"]
    args = ["run", str(STUDY_DIR / "baseline.yaml"), *(a for s in sets for a in ("--set", s))]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert (
        "unknown key 'model.predictor.made_up' (valid keys here for model.predictor.kind " in text
    )
    assert "mlp: bn_hidden, bn_output, hidden_dim, kind, trainable)" in text
    assert "Traceback" not in result.output and not any(tmp_path.iterdir())


def test_negative_seed_exits_2_and_names_seeds(tmp_path):
    study = tmp_path / "neg.yaml"
    study.write_text("name: neg\nvariants: {default: {}}\nseeds: [0, -1]\n")
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2, result.output
    assert "seeds.1" in result.output and "greater than or equal to 0" in result.output
    assert "Traceback" not in result.output


def test_missing_study_exits_2():
    result = runner.invoke(app, ["run", "no/such/study.yaml"])
    assert result.exit_code == 2 and "not found" in result.output


def test_run_cli_end_to_end(tmp_path):
    from tests.conftest import TINY

    sets = [
        a for s in [*TINY, f"output.root={tmp_path}", "train.max_steps=3"] for a in ("--set", s)
    ]
    study = next(p for p in STUDIES if p.name == "stopgrad.yaml")
    result = runner.invoke(app, ["run", str(study), "--no-progress", *sets])
    assert result.exit_code == 0, result.output
    assert "finished" in result.output
    assert len(list(tmp_path.glob("stopgrad/*/seed0/metrics.nc"))) == 2
    again = runner.invoke(app, ["run", str(study), "--no-progress", *sets])
    assert again.output.count("finished earlier, skipped") == 2


def test_missing_dataset_exits_2_and_names_the_folder(tmp_path):
    study = next(p for p in STUDIES if p.name == "stopgrad.yaml")
    sets = ["data.dataset=npz", f"data.root={tmp_path / 'nope'}", f"output.root={tmp_path}"]
    args = [a for s in sets for a in ("--set", s)]
    result = runner.invoke(app, ["run", str(study), "--no-progress", "--only", "stop_grad", *args])
    assert result.exit_code == 2
    assert "nope does not exist" in " ".join(result.output.split())


def _runs_listed(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if "/seed" in line.split(" ")[0]]


@pytest.mark.parametrize(
    ("seeds", "listed"),
    [
        ("0,1,2", ["seed0", "seed1", "seed2"]),
        ("0-2", ["seed0", "seed1", "seed2"]),
        ("3-4,7", ["seed3", "seed4", "seed7"]),
        (" 5 ", ["seed5"]),
    ],
)
def test_seeds_option_replaces_the_studys_seeds(seeds, listed):
    result = runner.invoke(app, ["validate", str(STUDY_DIR / "stopgrad.yaml"), "--seeds", seeds])
    assert result.exit_code == 0, result.output
    runs = _runs_listed(result.output)
    want = [f"{v}/{s}" for v in ("stop_grad", "no_stop_grad") for s in listed]
    assert runs == want and f"{len(want)} run(s) OK" in result.output


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ("-1", "'-1' is a negative seed"),
        ("0,-2", "'-2' is a negative seed"),
        ("1.5", "'1.5' is not an integer or range"),
        ("a", "'a' is not an integer or range"),
        ("", "--seeds is empty"),
        ("0,,1", "has an empty item"),
        ("2-0", "the range '2-0' ends below its start"),
        ("0-2,1", "gives seed(s) [1] more than once"),
        ("0-99999999999999999", "99999999999999999 is above the largest seed, 4294967295"),
        ("0-10000", "'0-10000' asks for more than 10,000 seeds"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_seeds_exit_2_before_any_work(command, seeds, message, tmp_path):
    study = str(STUDY_DIR / "baseline.yaml")
    args = [command, study, "--seeds", seeds, "--set", f"output.root={tmp_path}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing was started


def _toy_spec(root: Path, variant: str, seed: int):
    """The RunSpec whose folder is the toy run ``root/toy/<variant>/seed<seed>``."""
    from siamlab.config.study import StudyFile

    study = StudyFile(name="toy", variants={variant: {}}, seeds=[seed])
    return expand_study(study, sets=[f"output.root={root}"])[0]


def test_run_summary_shows_the_run_verdict_and_onset(tmp_path, monkeypatch):
    from siamlab.cli.app import console
    from siamlab.cli.run import _report
    from siamlab.study.execute import StudyReport, with_verdict
    from tests.conftest import make_run

    make_run(tmp_path, "bad", 0, epochs=4, status="finished")  # collapsed since 2, entered at 4
    make_run(tmp_path, "bad", 1, epochs=2)  # collapsed since 2 for 1 evaluation: provisional
    reports = [
        with_verdict(StudyReport(f"bad/seed{s}", "finished", {"epoch_loss": -0.98}), spec)
        for s in (0, 1)
        if (spec := _toy_spec(tmp_path, "bad", s))
    ]
    assert [(r.verdict, r.onset_epoch, r.provisional) for r in reports] == [
        ("collapsed", 2, False),
        ("collapsed", 2, True),
    ]
    no_results = StudyReport("moving_average_m08/seed0", "failed", {}, "boom")
    assert with_verdict(no_results, _toy_spec(tmp_path, "good", 0)) == no_results
    for width, train_std in [(80, False), (120, True)]:
        monkeypatch.setattr(console, "width", width)
        with console.capture() as captured:
            _report([*reports, no_results])
        lines = captured.get().splitlines()
        assert max(len(line) for line in lines) <= width
        rows = {ln.split()[0]: ln.split() for ln in lines if "/seed" in ln}
        assert rows["bad/seed0"][-3:] == ["collapsed", "ep", "2"]
        assert rows["bad/seed1"][-3:] == ["collapsed?", "ep", "2"]
        assert rows["moving_average_m08/seed0"][-2:] == ["-", "-"]  # failed before a verdict
        assert ("train" in captured.get()) is train_std  # dropped where it does not fit


def test_status_shows_the_run_verdict(tmp_path, monkeypatch):
    from siamlab.cli.app import console
    from tests.conftest import make_run

    make_run(tmp_path, "bad", 0, epochs=4, status="finished")
    make_run(tmp_path, "bad", 1, epochs=2)  # running, but no process holds it: stopped
    make_run(tmp_path, "bad", 2, epochs=4, status="stopped_collapsed")
    make_run(tmp_path, "good", 2, run_verdict=False)  # a file without the run verdict
    monkeypatch.setattr(console, "width", 80)
    result = runner.invoke(app, ["status", str(tmp_path / "toy")])
    assert result.exit_code == 0, result.output
    rows = {ln.split()[0]: ln.split() for ln in result.stdout.splitlines() if "/seed" in ln}
    assert rows["bad/seed0"][1:4] == ["finished", "16", "collapsed"]  # 4 steps per epoch
    assert rows["bad/seed1"][1:4] == ["stopped", "8", "collapsed?"]  # provisional
    assert rows["bad/seed2"][1:4] == ["stopped_collapsed", "16", "collapsed"]
    assert rows["good/seed2"][1:4] == ["finished", "20", "-"]
    for folder, message in (
        (tmp_path, f"{tmp_path} is a results root holding the studies toy; give one of them"),
        (tmp_path / "toy" / "bad" / "seed0", "is one run; give its study folder"),
    ):
        result = runner.invoke(app, ["status", str(folder)])
        assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_consoles_are_132_columns_into_a_file_and_follow_columns(monkeypatch, tmp_path):
    """Rich's 80-column default for non-terminals wrapped the summary's numbers in logs."""
    from siamlab.cli.app import _width

    monkeypatch.delenv("COLUMNS", raising=False)
    with open(tmp_path / "log", "w") as f:
        assert _width(f) == 132
    monkeypatch.setenv("COLUMNS", "100")
    assert _width(object()) == 100


def test_help_paragraphs_reflow_to_the_terminal_width():
    """Typer keeps a help paragraph's line breaks: at 80 columns a docstring wrapped at 88
    broke mid-sentence twice per line ("skipped like" / "a" / "finished one ...")."""
    from siamlab.cli.eval import eval_app

    for group in (app, eval_app):
        for info in group.registered_commands:
            for paragraph in str(info.help).split("\n\n"):
                assert "\n" not in paragraph and "``" not in paragraph, info.name
    out = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "80"}).output
    lines = [line.strip() for line in out.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("A run that"))
    assert len(lines[start]) > 70 and lines[start + 1].startswith("a finished one")


def test_siamlab_warnings_show_as_one_line_and_others_as_python_shows_them(capsys):
    import warnings

    from siamlab.cli.app import PACKAGE, one_line_warnings

    python: list[tuple] = []
    show = one_line_warnings(lambda *args: python.append(args))
    ours = str(PACKAGE / "train" / "device.py")
    show(UserWarning("resumes on 2 threads [slurm]"), UserWarning, ours, 120, None, "warn(m)")
    show(UserWarning("from torch"), UserWarning, "/site-packages/torch/x.py", 3, None, "warn()")
    err = capsys.readouterr().err
    assert err == "warning: resumes on 2 threads [slurm]\n"  # no file, line or source
    assert [a[:4] for a in python] == [(python[0][0], UserWarning, "/site-packages/torch/x.py", 3)]
    with warnings.catch_warnings():
        assert runner.invoke(app, ["validate", str(STUDIES[0])]).exit_code == 0
        installed = warnings.showwarning
        runner.invoke(app, ["validate", str(STUDIES[0])])
        assert getattr(warnings.showwarning, "one_line", False)
        assert warnings.showwarning is installed  # once, not wrapped at each command
