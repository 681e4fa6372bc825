import pytest
import torch
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.results.store import open_run, write_run
from siamlab.run.train_run import train_run
from tests.conftest import tiny_runs

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    sets = ["train.threads=1", "train.epochs=1", "output.tensorboard=false"]
    spec = tiny_runs(tmp_path_factory.mktemp("eval"), sets=sets)[0]
    assert train_run(spec, progress=False).status == "finished"
    return spec.directory()


def test_eval_knn_on_a_finished_run_matches_the_monitor_and_is_recorded(finished_run):
    result = runner.invoke(app, ["eval", "knn", str(finished_run), "--no-progress"])
    assert result.exit_code == 0, result.output
    ds = open_run(finished_run)
    # same classifier, k, T, bank (train split) and queries (test split) as the monitor
    assert float(ds["eval_knn_top1"]) == pytest.approx(float(ds["knn_top1"][-1]))
    assert "k=10" in ds["eval_knn_top1"].attrs["recipe"]
    assert "bank: train split" in ds["eval_knn_top1"].attrs["data"]
    assert ds.attrs["status"] == "finished" and "loss" in ds


def test_eval_linear_on_a_study_records_the_path_and_recipe(finished_run):
    study = finished_run.parent.parent
    args = ["eval", "linear", "--study", str(study), "--no-progress", "--epochs", "3"]
    args += ["--optimizer", "sgd", "--base-lr", "0.1", "--batch-size", "64"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    top1 = open_run(finished_run)["eval_linear_top1"]
    assert 0.0 <= float(top1) <= 1.0
    assert top1.attrs["path"] == "fast" and "sgd lr=0.1x64/256" in top1.attrs["recipe"]
    assert "last.pt (siamlab" in top1.attrs["checkpoint"] and "step 4" in top1.attrs["checkpoint"]


def test_unfinished_run_is_evaluated_but_not_recorded(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "copy" / "default" / "seed0"
    shutil.copytree(finished_run, copy)
    ds = open_run(copy).drop_vars(["eval_knn_top1", "eval_knn_top5"], errors="ignore")
    ds.attrs["status"] = "running"
    write_run(copy, ds)
    result = runner.invoke(app, ["eval", "knn", str(copy), "--no-progress", "--k", "5"])
    assert result.exit_code == 0, result.output
    assert "not recorded" in result.output and "eval_knn_top1" not in open_run(copy)
    study = runner.invoke(app, ["eval", "knn", "--study", str(tmp_path / "copy")])
    assert study.exit_code == 2 and "no finished runs" in study.output


def test_user_errors_exit_2_without_traceback(tmp_path):
    torch.save({"weights": torch.ones(1)}, tmp_path / "odd.pt")
    (tmp_path / "junk.pth").write_text("174812789 not a checkpoint\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    cases = [
        (["eval", "knn", str(tmp_path / "junk.pth")], "junk.pth is not a torch checkpoint: 27"),
        (["eval", "knn", str(tmp_path / "junk.pth")], "a text file, starting '174812789 not"),
        (["eval", "knn", str(tmp_path / "empty.pth")], "0 bytes: an empty file"),
        (["eval", "knn", str(tmp_path / "empty.pth")], "reference: facebookresearch/simsiam"),
        (["eval", "knn", str(tmp_path / "odd.pt")], "Found top-level keys ['weights']"),
        (["eval", "knn"], "either a CHECKPOINT or --study"),
        (["eval", "knn", str(tmp_path / "missing.pt")], "no checkpoint"),
        (["eval", "linear", str(tmp_path / "odd.pt")], "unrecognised checkpoint format"),
        (["eval", "linear", str(tmp_path / "odd.pt"), "--path", "slow"], "fast|augmented"),
        (["eval", "knn", str(tmp_path / "odd.pt"), "--bank", "val"], "bank and queries"),
        (["eval", "knn", str(tmp_path / "odd.pt"), "--k", "0"], "kNN needs k >= 1"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        output = " ".join(result.output.split())  # the console wraps long lines
        assert message in output and "Traceback" not in output, (message, output)


def test_an_output_folder_is_checked_before_the_work_and_a_training_run_is_left_alone(
    finished_run, tmp_path
):
    import shutil

    lone = tmp_path / "lone.pt"  # a checkpoint outside its run: recorded only with --output
    shutil.copyfile(finished_run / "checkpoints" / "last.pt", lone)
    (tmp_path / "afile.txt").write_text("x")
    result = runner.invoke(app, ["eval", "knn", str(lone), "--output", str(tmp_path / "afile.txt")])
    assert result.exit_code == 2 and "is a file; pass a folder" in result.output
    training = tmp_path / "other" / "default" / "seed0"
    shutil.copytree(finished_run, training)
    ds = open_run(training).drop_vars(["eval_knn_top1", "eval_knn_top5"], errors="ignore")
    ds.attrs["status"] = "running"
    write_run(training, ds)
    args = ["eval", "knn", str(lone), "--output", str(training), "--no-progress", "--k", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "not recorded" in printed and "status is 'running': pass another --output" in printed
    assert "eval_knn_top1" not in open_run(training)
    fresh = tmp_path / "fresh"
    args[4] = str(fresh)
    assert runner.invoke(app, args).exit_code == 0 and "eval_knn_top1" in open_run(fresh)
