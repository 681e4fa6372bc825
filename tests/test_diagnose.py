"""siamlab diagnose: a checkpoint of any format gives its run's diagnostics; clear errors."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from siamlab.cli import app
from siamlab.config.study import StudyFile, expand_study
from siamlab.data.image_files import own_images, split_test
from siamlab.diagnose.checkpoint_files import Epoch, check_epochs, epoch_in_name, epoch_of
from siamlab.diagnose.data import dataset_of
from siamlab.diagnose.runner import diagnose
from siamlab.diagnose.verdict import fold, hold_for, judge_embeddings
from siamlab.diagnostics.config import VerdictConfig
from siamlab.diagnostics.verdict_rule import EpochSignals, judge_epoch
from siamlab.errors import CorruptImageError, DataError, ResultsError
from siamlab.evaluation.checkpoints import load_checkpoint_any
from siamlab.evaluation.reference_format import save_reference
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import create_model
from siamlab.results.schema import spec
from siamlab.results.store import NETCDF_ENGINE, open_run
from siamlab.run.assemble import build_run
from siamlab.train.distributed import DistInfo

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

DATA = ["data.image_size=8", "data.train_limit=128", "data.test_limit=64", "diagnostics.knn_k=10"]
RESNET = ["model.backbone=resnet18", "model.cifar_stem=true", "model.dim=64"]
TINY_RESNET = [*DATA, *RESNET, "model.projector.hidden_dim=64", "train.batch_size=32"]


class ReferenceEveryEpoch:
    """A monitor sink that writes the model in the reference format after each epoch."""

    def __init__(self, model: torch.nn.Module, folder: Path) -> None:
        self.model, self.folder = model, folder

    def write(self, scope: str, index: int, values: object) -> None:
        if scope == "epoch":  # the reference names files by 0-based epoch, stores epoch + 1
            save_reference(self.model, self.folder / f"checkpoint_{index - 1:04d}.pth.tar", index)

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_reference_checkpoints_give_the_runs_own_diagnostics_at_each_epoch(tmp_path):
    sets = [*TINY_RESNET, "train.epochs=2", "train.threads=1", f"output.root={tmp_path}"]
    sets.append("train.precision=fp32")  # the exact path: no channels_last, whose kernels
    # round the run's own evaluations otherwise than diagnose's contiguous model does
    spec_ = expand_study(StudyFile(name="tiny", variants={"r18": {}}, seeds=[0]), sets=sets)[0]
    run = build_run(spec_, torch.device("cpu"), DistInfo(), progress=False)
    run.monitor.sinks.append(ReferenceEveryEpoch(run.model, tmp_path / "ckpts"))
    run.trainer.fit(run.start_step, run.length.total_steps)
    run.monitor.close()
    own = open_run(run.directory)

    out = diagnose(tmp_path / "ckpts", data="digits", sets=DATA, device="cpu")
    ds = out.dataset
    assert ds.attrs["checkpoint_format"] == "reference" and ds.attrs["epoch_from"] == "stored"
    assert list(ds["epoch"].values) == [1, 2]
    numeric = [n for n in ds.data_vars if ds[n].dtype.kind == "f" and "run_verdict" not in n]
    assert {"z_std_eval", "z_residual_norm", "z_rankme", "h_alpha", "knn_top1"} <= set(numeric)
    for name in numeric:
        mine, theirs = ds[name], own[name].sel(epoch=[1, 2])
        if "component" in mine.dims:  # the union of h's and z's spectra lengths
            theirs = theirs.isel(component=slice(0, mine.sizes["component"]))
        np.testing.assert_allclose(mine.values, theirs.values, rtol=1e-6, err_msg=name)
    assert xr.open_dataset(out.path, engine=NETCDF_ENGINE).load().identical(ds)


def _resnet18_state(tmp_path: Path, prefix: str = "") -> Path:
    torch.manual_seed(0)
    sd = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save({prefix + k: v for k, v in sd.items()}, path)
    return path


def test_siamlab_model_round_trips_through_the_reference_format(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"backbone": "resnet18", "dim": 32})
    model = create_model(cfg)
    save_reference(model, tmp_path / "checkpoint_0006.pth.tar", epoch=7)
    loaded = load_checkpoint_any(tmp_path / "checkpoint_0006.pth.tar")
    assert (loaded.format, loaded.epoch) == ("reference", 7)
    assert loaded.parts == ("backbone", "projector", "predictor")
    back = loaded.model.state_dict()
    assert all(torch.equal(v, back[k]) for k, v in model.state_dict().items())
    convnet = create_model(ModelConfig.model_validate({"backbone": "convnet_small", "dim": 32}))
    with pytest.raises(ResultsError, match="holds a torchvision ResNet encoder"):
        save_reference(convnet, tmp_path / "no.pth.tar", epoch=1)


def test_a_resnet_under_any_key_prefix_loads_as_a_backbone(tmp_path):
    loaded = load_checkpoint_any(_resnet18_state(tmp_path, "backbone."))
    assert (loaded.format, loaded.parts) == ("torchvision", ("backbone",))


def test_unknown_checkpoint_says_what_it_found_and_what_is_known(tmp_path):
    torch.save({"net": {"w1": torch.zeros(2)}, "step": 3}, tmp_path / "odd.pt")
    with pytest.raises(ResultsError) as info:
        diagnose(tmp_path / "odd.pt", data="digits")
    text = str(info.value)
    assert "Found top-level keys ['net', 'step']; 'net': state-dict key prefixes" in text
    assert all(f"{name}:" in text for name in ("siamlab", "reference", "torchvision"))
    assert "torchvision's key names" in text


def test_epochs_come_from_the_file_else_its_name(tmp_path):
    assert epoch_in_name(Path("checkpoint_0042.pth.tar")) == 42
    assert epoch_in_name(Path("epoch=7-step=300.ckpt")) == 7
    assert epoch_in_name(Path("simsiam_ep100.pth")) == 100
    assert epoch_in_name(Path("resnet18_200.pth")) == 200
    assert epoch_in_name(Path("resnet18.pth")) is None and epoch_in_name(Path("last.pt")) is None
    assert epoch_of(Path("checkpoint_0041.pth.tar"), 42) == Epoch(42, "stored")
    assert epoch_of(Path("last.pt"), None) == Epoch(1, "unknown")
    with pytest.raises(ResultsError, match="cannot tell the epoch of b.pt"):
        check_epochs({Path("a_1.pt"): Epoch(1, "name"), Path("b.pt"): Epoch(1, "unknown")})
    with pytest.raises(ResultsError, match="are both epoch 3"):
        check_epochs({Path("a.pt"): Epoch(3, "stored"), Path("b.pt"): Epoch(3, "stored")})
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ResultsError, match=r"no checkpoint in .*it holds: notes.txt"):
        diagnose(tmp_path, data="digits")


def test_the_verdict_from_embeddings_alone():
    cfg = VerdictConfig(  # the thresholds spelled out, whatever the defaults
        collapsed_residual_norm=0.2,
        dimensional_erank_fraction=0.05,
        partial_residual_norm=0.7,
        partial_erank_fraction=0.25,
    )
    judge = lambda norm, frac: judge_embeddings(  # noqa: E731
        cfg, {"z_residual_norm": norm, "z_residual_erank_fraction": frac}, "z", 4
    )[0]
    assert [judge(0.05, 0.3), judge(0.9, 0.01), judge(0.5, 0.1), judge(0.9, 0.3)] == [
        "collapsed",
        "dimensional_collapse",
        "partial_collapse",  # the centre dominates and the residual has few directions
        "healthy",
    ]
    assert judge(0.5, 0.9) == "healthy"  # a large offset over a full-rank residual
    assert judge(0.9, 0.1) == "healthy"  # low rank, but the centre does not dominate
    crowded = judge_embeddings(
        cfg.model_copy(update={"partial_residual_std": 0.9}),
        {"z_residual_norm": 0.47, "z_residual_erank_fraction": 0.3, "z_residual_std": 0.68},
        "z",
        4,
    )
    assert crowded[0] == "partial_collapse" and "std*sqrt(d) 0.68 < 0.9" in crowded[1]
    assert judge(math.nan, math.nan) == "unstable"  # non-finite: no residual measured
    one = fold([(40, "collapsed", "e")], hold_for(cfg, 1))[-1]
    assert (one.verdict, one.provisional) == ("collapsed", False)  # one checkpoint: alone
    states = ["healthy", "collapsed", "collapsed", "collapsed"]
    run = fold([(5 * i, s, s) for i, s in enumerate(states, 1)], hold_for(cfg, 4))[-1]
    assert (run.verdict, run.onset_epoch) == ("collapsed", 10)  # entered after 3


def test_a_checkpoint_is_judged_by_the_training_rules_geometry():
    """Over a grid of centred geometries, diagnose's state is the training rule's for a
    run whose loss converged (``collapsed`` there needs the loss to have gone down, the
    other states are geometry alone), so the two verdicts cannot drift apart."""
    cfg = VerdictConfig()
    trained = dict(loss=-0.9, start_loss=0.0, earlier_loss=-0.9, jitter=0.01, noise=0.01)
    seen = set()
    for norm in (0.05, 0.19, 0.21, 0.5, 0.79, 0.81, 0.97):
        for frac in (0.01, 0.029, 0.031, 0.1, 0.19, 0.21, 0.5):
            for spread in (math.nan, 0.5, 0.84, 0.86, 1.0):
                values = {"z_residual_norm": norm, "z_residual_erank_fraction": frac}
                values["z_residual_std"] = spread
                alone, _ = judge_embeddings(cfg, values, "z", 7)
                signals = EpochSignals(
                    7, residual_norm=norm, residual_erank_fraction=frac, residual_std=spread,
                    **trained,
                )  # fmt: skip
                assert judge_epoch(cfg, signals)[0] == alone, (norm, frac, spread)
                seen.add(alone)
    assert seen == {"collapsed", "dimensional_collapse", "partial_collapse", "healthy"}


def _digit_pngs(root: Path, per_class: int, classes: int = 3) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == c][:per_class]):
            Image.fromarray(np.uint8(image * 15)).save(root / f"class{c}" / f"{i}.png")


def test_an_image_folder_is_split_per_class_with_clear_errors(tmp_path):
    _digit_pngs(tmp_path / "mine", per_class=10)
    train, test = own_images(tmp_path / "mine", 0.2)
    assert (len(train), len(test), train.classes) == (24, 6, ["class0", "class1", "class2"])
    assert np.bincount(test.targets).tolist() == [2, 2, 2]  # 0.2 of every class
    assert split_test(np.zeros(3, dtype=np.int64), 0.01).sum() == 1  # at least one
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images in .*empty.*readme.txt"):
        own_images(tmp_path / "empty", 0.2)
    Image.new("RGB", (8, 8)).save(tmp_path / "mine" / "loose.png")
    with pytest.raises(DataError, match="both image files"):
        own_images(tmp_path / "mine", 0.2)
    (tmp_path / "mine" / "loose.png").unlink()
    (tmp_path / "mine" / "class1" / "broken.png").write_text("not a png")
    source = next(
        s for s in own_images(tmp_path / "mine", 0.2) if any("broken" in f for f in s.files)
    )
    with pytest.raises(CorruptImageError, match="cannot read image .*broken.png"):
        source.image(next(i for i, f in enumerate(source.files) if "broken" in f))


def test_data_names_built_ins_npz_and_folders(tmp_path):
    assert dataset_of("digits") == {"dataset": "digits"}
    np.savez(tmp_path / "toy_train.npz", x=np.zeros(1))
    assert dataset_of(str(tmp_path)) == {"dataset": "npz", "root": str(tmp_path), "name": "toy"}
    assert dataset_of(str(tmp_path / "toy_train.npz"))["name"] == "toy"
    (tmp_path / "inet" / "train").mkdir(parents=True)
    assert dataset_of(str(tmp_path / "inet"))["dataset"] == "imagefolder"
    assert dataset_of(str(tmp_path / "inet" / "train"))["dataset"] == "images"
    with pytest.raises(DataError, match="not a built-in dataset"):
        dataset_of(str(tmp_path / "nowhere"))


def test_cli_on_a_torchvision_backbone_and_an_image_folder(tmp_path):
    _digit_pngs(tmp_path / "mine", per_class=12)
    ckpt = _resnet18_state(tmp_path)
    args = ["diagnose", str(ckpt), "--data", str(tmp_path / "mine"), "--image-size", "8"]
    result = runner.invoke(app, [*args, "--no-progress", "--set", "diagnostics.knn_k=5"])
    assert result.exit_code == 0, result.output
    assert "judged on h from embeddings alone" in result.output
    assert "kNN top-1" in result.output and "torchvision" in result.output
    ds = xr.open_dataset(tmp_path / "diagnose-resnet18" / "diagnostics.nc", engine=NETCDF_ENGINE)
    assert ds.attrs["verdict_branch"] == "h" and ds.attrs["status"] == "diagnosed"
    assert not [n for n in ds.data_vars if str(n).startswith(("z_", "p_"))]  # random heads
    for name in ds.data_vars:  # the run schema: declared variables, long_name and units
        assert ds[name].attrs["long_name"] == spec(str(name)).long_name
        assert "units" in ds[name].attrs
    assert ds["knn_top1"].dims == ("epoch",) and ds["h_spectrum"].dims == ("epoch", "component")
    (tmp_path / "mine" / "class1" / "broken.jpg").write_text("not a jpeg")
    result = runner.invoke(app, [*args, "--no-progress", "--no-figures"])
    assert result.exit_code == 2 and "broken.jpg" in result.output.replace("\n", "")
    result = runner.invoke(app, ["diagnose", str(ckpt), "--no-progress"])
    assert result.exit_code == 2 and "--data digits | cifar10 | PATH" in result.output
