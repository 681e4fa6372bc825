"""A run records which images it trained on, and resumes or counts as done only on them."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from siamlab.data.build import fingerprint_of
from siamlab.data.config import DataConfig
from siamlab.data.fingerprint import data_fingerprint, same_images
from siamlab.data.sources import ArraySource, FolderSource
from siamlab.data.tolerant import TolerantSource
from siamlab.errors import ConfigError, ResultsError
from siamlab.results.run_notes import config_conflicts, data_conflicts
from siamlab.results.store import open_run, write_run
from siamlab.run.train_run import train_run
from siamlab.study.changed_config import config_changes
from siamlab.study.execute import run_study
from tests.conftest import kill_after_epoch, tiny_runs

QUIET = {"progress": False, "log": lambda _: None}


def _images(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 4


def _npz_folder(folder, seed: int = 0):
    """A folder of tiny npz splits (256 + 128 random 8 px images, 4 classes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 256), ("test", 128)):
        x, y = _images(seed + (split == "test"), n)
        np.savez(folder / f"toy_{split}.npz", x=x, y=y, classes=np.array(list("abcd")))
    return folder


def _npz_sets(folder, *more: str) -> list[str]:
    return ["data.dataset=npz", f"data.root={folder}", "data.name=toy", *more]


def test_the_fingerprint_changes_with_any_pixel_label_or_class_and_only_then():
    x, y = _images(0, 16)
    base = data_fingerprint(ArraySource(x, y, "abcd"), ArraySource(x[:4], y[:4], "abcd"))
    assert base.startswith("blake2b-128:") and base.endswith("(16 + 4 images)")
    copy = data_fingerprint(ArraySource(x.copy(), y, "abcd"), ArraySource(x[:4], y[:4], "abcd"))
    assert copy == base
    pixel = x.copy()
    pixel[3, 2, 1, 0] ^= 1
    label = y.copy()
    label[0] = 3
    for other in (
        (ArraySource(pixel, y, "abcd"), ArraySource(x[:4], y[:4], "abcd")),
        (ArraySource(x, label, "abcd"), ArraySource(x[:4], y[:4], "abcd")),
        (ArraySource(x, y, "abce"), ArraySource(x[:4], y[:4], "abce")),
        (ArraySource(x[:4], y[:4], "abcd"), ArraySource(x, y, "abcd")),  # splits swapped
    ):
        assert not same_images(data_fingerprint(*other), base)
    wrapped = TolerantSource(ArraySource(x, y, "abcd"), 0.1)
    assert data_fingerprint(wrapped, ArraySource(x[:4], y[:4], "abcd")) == base


def test_image_files_are_named_by_their_path_under_the_root():
    names = ["train/a/1.png", "train/b/2.png"]
    y = np.array([0, 1])

    def at(root: str, files=names) -> str:
        train = FolderSource([str(Path(root) / f) for f in files], y, ["a", "b"])
        return data_fingerprint(train, train, root)

    assert at("/data/in") == at("/mnt/copy/") == at("/mnt/copy")
    assert at("/data/in") != at("/data/in", ["train/a/1.png", "train/b/3.png"])


def test_the_loaded_data_is_fingerprinted_after_the_limits(tmp_path):
    one, moved = _npz_folder(tmp_path / "one"), tmp_path / "moved"
    shutil.copytree(one, moved)
    cfg = DataConfig(dataset="npz", root=str(one), name="toy")
    assert fingerprint_of(cfg) == fingerprint_of(
        cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"root": str(moved)})})
    )
    assert fingerprint_of(cfg).endswith("(256 + 128 images)")
    assert not same_images(
        fingerprint_of(cfg.model_copy(update={"train_limit": 128})), fingerprint_of(cfg)
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny study on npz images, the images in ``data/``."""
    root = tmp_path_factory.mktemp("fingerprint")
    data = _npz_folder(root / "data")
    runs = tiny_runs(root / "out", variants={"a": {}}, sets=_npz_sets(data, "train.max_steps=2"))
    assert [r.status for r in run_study(runs, **QUIET)] == ["finished"]
    return root


def test_results_record_the_fingerprint_and_moved_images_are_the_same_run(finished, tmp_path):
    data = finished / "data"
    (run,) = tiny_runs(
        finished / "out", variants={"a": {}}, sets=_npz_sets(data, "train.max_steps=2")
    )
    recorded = open_run(run.directory()).attrs["data_fingerprint"]
    assert recorded == fingerprint_of(run.config.data)
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    loader = ["data.pin_memory=false", "data.persistent_workers=true"]  # how, not what
    (again,) = tiny_runs(
        finished / "out", variants={"a": {}}, sets=_npz_sets(moved, "train.max_steps=2", *loader)
    )
    assert config_changes(again) == []
    (workers,) = tiny_runs(
        finished / "out",
        variants={"a": {}},
        sets=_npz_sets(moved, "train.max_steps=2", "data.num_workers=2"),
    )  # workers make the batched views on other threads: not bit for bit the same run
    assert config_changes(workers) == ["data.num_workers: 0 -> 2"]
    before = (run.directory() / "metrics.nc").read_bytes()
    assert [r.status for r in run_study([again], **QUIET)] == ["skipped"]  # done already
    assert (run.directory() / "metrics.nc").read_bytes() == before


def test_a_root_moved_to_other_images_is_refused_before_anything_trains(finished, tmp_path):
    other = _npz_folder(tmp_path / "data", seed=7)  # the same file names, other pixels
    runs = tiny_runs(
        finished / "out", variants={"a": {}}, sets=_npz_sets(other, "train.max_steps=2")
    )
    with pytest.raises(ConfigError) as err:
        run_study(runs, **QUIET)
    message = str(err.value)
    assert "a/seed0: data.root: " in message and "other images than it trained on" in message
    assert "point data.root at the images those runs trained on" in message
    assert open_run(runs[0].directory()).attrs["status"] == "finished"  # left as it was


def test_other_images_under_the_same_root_are_refused(tmp_path):
    data = _npz_folder(tmp_path / "data")
    runs = tiny_runs(tmp_path / "out", sets=_npz_sets(data, "train.max_steps=2"))
    run_study(runs, **QUIET)
    _npz_folder(data, seed=7)  # the files regenerated: other pixels under the same names
    with pytest.raises(ConfigError, match="other images than asked for") as err:
        run_study(runs, **QUIET)
    (line,) = [ln for ln in str(err.value).splitlines() if "seed0:" in ln]
    assert line.strip().startswith("default/seed0: data: other images than it trained on")


def test_a_moved_root_over_results_without_a_fingerprint_stays_a_change(finished, tmp_path):
    shutil.copytree(finished / "out", tmp_path / "out")
    shutil.copytree(finished / "data", tmp_path / "moved")
    (run,) = tiny_runs(
        tmp_path / "out",
        variants={"a": {}},
        sets=_npz_sets(tmp_path / "moved", "train.max_steps=2"),
    )
    ds = open_run(run.directory()).load()
    del ds.attrs["data_fingerprint"]  # results from before the fingerprint
    write_run(run.directory(), ds)
    changes = config_changes(run)
    assert changes[0].startswith("data.root: ") and "record no data fingerprint" in changes[1]


def test_a_resume_continues_on_moved_images_and_refuses_other_ones(tmp_path, monkeypatch):
    data = _npz_folder(tmp_path / "data")
    whole = tiny_runs(tmp_path / "whole", sets=_npz_sets(data))[0]
    reference = open_run(train_run(whole, progress=False).directory)
    cut = tiny_runs(tmp_path / "cut", sets=_npz_sets(data))[0]
    kill_after_epoch(cut, 1, monkeypatch)
    moved = tmp_path / "moved"
    data.rename(moved)
    how = _npz_sets(moved, "data.pin_memory=false")  # how batches are handed over: resumable
    resumed = train_run(tiny_runs(tmp_path / "cut", sets=how)[0], progress=False)
    for name in ("loss", "z_std_eval", "knn_top1"):
        xr.testing.assert_equal(reference[name], open_run(resumed.directory)[name])
    again = tiny_runs(tmp_path / "again", sets=_npz_sets(moved))[0]
    kill_after_epoch(again, 1, monkeypatch)
    _npz_folder(moved, seed=7)  # the folder's files replaced by other images
    with pytest.raises(ResultsError, match="trained on other images than data.root now holds"):
        train_run(again, progress=False)


def test_compare_notes_runs_on_other_images_and_seeds_on_other_roots_only_then():
    def study(fingerprints, roots, names=("toy", "toy")):
        """One variant, a seed per (fingerprint, root, npz name)."""
        config = [
            [
                f"data:\n  dataset: npz\n  root: {r}\n  name: {n}\n"
                for r, n in zip(roots, names, strict=True)
            ]
        ]
        return xr.Dataset(
            {
                "data_fingerprint": (("variant", "seed"), [fingerprints]),
                "config": (("variant", "seed"), config),
                "status": (("variant", "seed"), [["finished"] * len(roots)]),
            },
            coords={"variant": ["a"], "seed": list(range(len(roots)))},
        )

    moved = study(["blake2b-128:aa (4 + 2 images)"] * 2, ["/x", "/y"])
    assert data_conflicts(moved) == [] and config_conflicts(moved) == []
    other = study(["blake2b-128:aa (4 + 2 images)", "blake2b-128:bb (4 + 2 images)"], ["/x", "/y"])
    (note,) = data_conflicts(other)
    assert "asked for the same images but trained on different ones" in note
    assert "a/seed0" in note and "a/seed1" in note
    (mixed,) = config_conflicts(other)
    assert "data.root: seed0='/x', seed1='/y'" in mixed
    on_purpose = study(
        ["blake2b-128:aa (4 + 2 images)", "blake2b-128:bb (4 + 2 images)"],
        ["/x", "/x"],
        ("toy", "cifar10"),
    )
    assert data_conflicts(on_purpose) == []  # other data asked for: no surprise
    unknown = study(["", ""], ["/x", "/y"])  # files from before the fingerprint
    assert data_conflicts(unknown) == [] and len(config_conflicts(unknown)) == 1


def test_an_eval_on_other_images_says_so_and_records_which(finished, tmp_path):
    from siamlab.evaluation.knn_eval import KnnRecipe
    from siamlab.evaluation.runner import prepare, run_knn

    (run,) = tiny_runs(
        finished / "out", variants={"a": {}}, sets=_npz_sets(finished / "data", "train.max_steps=2")
    )
    other = _npz_folder(tmp_path / "other", seed=7)
    target = prepare(run.directory(), sets=[f"data.root={other}"], device="cpu")
    out = run_knn(target, KnnRecipe(k=5), progress=False)
    (note,) = [n for n in out.notes if "other images than the run trained on" in n]
    assert open_run(run.directory()).attrs["data_fingerprint"] in note
    assert target.data.fingerprint in open_run(run.directory())["eval_knn_top1"].attrs["data"]
    same = run_knn(prepare(run.directory(), device="cpu"), KnnRecipe(k=5), progress=False)
    assert not [n for n in same.notes if "other images" in n]


def test_a_diagnose_on_other_images_says_so_and_records_which(finished, tmp_path):
    from siamlab.diagnose import diagnose

    run_dir = finished / "out" / "tiny" / "a" / "seed0"
    trained = open_run(run_dir).attrs["data_fingerprint"]
    own = diagnose(run_dir, output=tmp_path / "own", figures=False)
    assert own.dataset.attrs["data_fingerprint"] == trained
    assert not [n for n in own.notes if "other images" in n]
    other = _npz_folder(tmp_path / "other", seed=7)
    out = diagnose(run_dir, sets=[f"data.root={other}"], output=tmp_path / "o", figures=False)
    (note,) = [n for n in out.notes if "measured on other images than the run trained on" in n]
    assert trained in note and out.dataset.attrs["data_fingerprint"] in note
    assert not same_images(out.dataset.attrs["data_fingerprint"], trained)


def _png_folder(folder: Path) -> Path:
    """A folder of tiny labelled PNGs: folder/<class>/<i>.png."""
    from PIL import Image

    for c in "ab":
        (folder / c).mkdir(parents=True)
        for i in range(6):
            pixels = np.full((8, 8, 3), 40 * i + (c == "b") * 7, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / c / f"{i}.png")
    return folder


def test_a_moved_image_folder_keeps_its_names_fingerprint_but_stays_a_change(tmp_path):
    from siamlab.study.changed_config import DataCheck, _data_changes

    folder = _png_folder(tmp_path / "pngs")
    shutil.copytree(folder, tmp_path / "moved")
    cfg = DataConfig(dataset="images", root=str(folder))
    moved = cfg.model_copy(
        update={"dataset": cfg.dataset.model_copy(update={"root": str(tmp_path / "moved")})}
    )
    home = DataConfig(dataset="images", root="~/../" + str(folder).lstrip("/"))  # the same, via ~
    recorded = fingerprint_of(cfg)
    assert recorded.startswith("blake2b-128-files:") and recorded == fingerprint_of(moved)
    assert fingerprint_of(home) == recorded
    (tmp_path / "moved" / "a" / "0.png").rename(tmp_path / "moved" / "a" / "9.png")
    assert not same_images(fingerprint_of(moved), recorded)
    (tmp_path / "moved" / "a" / "9.png").rename(tmp_path / "moved" / "a" / "0.png")
    (spec,) = tiny_runs(
        tmp_path / "out", sets=["data.dataset=images", f"data.root={tmp_path / 'moved'}"]
    )
    diffs = [f"data.root: {str(folder)!r} -> {str(tmp_path / 'moved')!r}"]
    attrs = {"data_fingerprint": recorded, "status": "finished"}
    changes = _data_changes(diffs, attrs, spec, DataCheck())
    assert changes[0] == diffs[0] and "by their names and sizes, not their pixels" in changes[1]


def test_image_files_re_encoded_under_the_same_names_are_other_images(tmp_path):
    from PIL import Image

    folder = _png_folder(tmp_path / "pngs")
    cfg = DataConfig(dataset="images", root=str(folder))
    recorded = fingerprint_of(cfg)
    names_only = "blake2b-128-names:" + recorded.split(":", 1)[1].split("-", 1)[0]
    assert same_images(names_only, recorded)  # a record of 2026-12-07: compared by names
    noisy = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(folder / "b" / "3.png")  # other pixels under the same name
    assert not same_images(fingerprint_of(cfg), recorded)
    assert same_images(fingerprint_of(cfg), names_only)  # the names alone cannot tell
    (folder / "a" / "0.png").rename(folder / "a" / "x.png")
    assert not same_images(fingerprint_of(cfg), names_only)


def test_a_checkpoint_moves_its_root_only_with_a_fingerprint_of_pixels(tmp_path):
    from siamlab.run.checkpointer import read_checkpoint
    from siamlab.train.checkpoint import save_checkpoint

    config = {"data": {"dataset": "npz", "root": "/old"}, "output": {"root": "/o"}}
    asked = {"data": {"dataset": "npz", "root": "/new"}, "output": {"root": "/p"}}
    for fingerprint, resumes in (
        ("blake2b-128:aa (4 + 2 images)", True),
        ("blake2b-128-files:aa-bb (4 + 2 images)", False),  # image files: names, sizes
        ("blake2b-128-names:aa (4 + 2 images)", False),  # image files: names only
        ("", False),  # a checkpoint from before the fingerprint
    ):
        save_checkpoint(
            tmp_path / "checkpoints", {"step": 1, "config": config, "data_fingerprint": fingerprint}
        )
        if resumes:
            assert read_checkpoint(tmp_path, asked)["data_fingerprint"] == fingerprint
        else:
            with pytest.raises(ResultsError, match="data.root: '/old' -> '/new'"):
                read_checkpoint(tmp_path, asked)


def test_an_eval_of_an_unfinished_run_on_other_images_says_so_too(tmp_path, monkeypatch):
    from siamlab.evaluation.knn_eval import KnnRecipe
    from siamlab.evaluation.runner import prepare, run_knn

    (cut,) = tiny_runs(tmp_path / "out", sets=_npz_sets(_npz_folder(tmp_path / "data")))
    kill_after_epoch(cut, 1, monkeypatch)
    other = _npz_folder(tmp_path / "other", seed=7)
    out = run_knn(
        prepare(cut.directory(), sets=[f"data.root={other}"], device="cpu"),
        KnnRecipe(k=5),
        progress=False,
    )
    assert any("other images than the run trained on" in n for n in out.notes), out.notes
    assert any(n.startswith("not recorded: run status is 'running'") for n in out.notes)
