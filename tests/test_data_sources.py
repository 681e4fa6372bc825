import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamlab.data.config import DataConfig
from siamlab.data.sources import ArraySource, FolderSource, load_sources, stratified_indices
from siamlab.errors import DataError

SHARED = Path(os.environ.get("SIAMLAB_DATA", Path(__file__).resolve().parents[2] / "shared/data"))


# --- digits ------------------------------------------------------------------------------


def test_digits_shapes_and_values() -> None:
    train, test = load_sources(DataConfig(image_size=16))
    assert isinstance(train, ArraySource) and isinstance(test, ArraySource)
    assert train.x.shape == (1437, 16, 16, 3) and test.x.shape == (360, 16, 16, 3)
    assert train.x.dtype == np.uint8 and train.targets.dtype == np.int64
    assert train.x.max() == 255 and train.x.min() == 0
    assert (train.x[..., 0] == train.x[..., 2]).all()  # grayscale replicated
    assert train.classes == [str(d) for d in range(10)]
    img = train.image(0)
    assert img.mode == "RGB" and img.size == (16, 16)


def test_digits_split_is_deterministic_and_stratified() -> None:
    a_train, a_test = load_sources(DataConfig(image_size=8))
    b_train, b_test = load_sources(DataConfig(image_size=8))
    assert isinstance(a_train, ArraySource) and isinstance(b_train, ArraySource)
    np.testing.assert_array_equal(a_train.targets, b_train.targets)
    np.testing.assert_array_equal(a_train.x, b_train.x)
    np.testing.assert_array_equal(a_test.targets, b_test.targets)
    counts_train, counts_test = np.bincount(a_train.targets), np.bincount(a_test.targets)
    share = counts_test / (counts_train + counts_test)
    assert np.all(np.abs(share - 0.2) < 0.02)


def test_stratified_indices() -> None:
    y = np.repeat(np.arange(3), [50, 30, 20])
    idx = stratified_indices(y, 10)
    np.testing.assert_array_equal(idx, stratified_indices(y, 10))
    assert len(idx) == 10 and len(np.unique(idx)) == 10 and (np.diff(idx) > 0).all()
    assert np.bincount(y[idx]).tolist() == [5, 3, 2]
    np.testing.assert_array_equal(stratified_indices(y, 1000), np.arange(100))
    np.testing.assert_array_equal(stratified_indices(y, None), np.arange(100))


def test_limits_keep_a_stratified_subset() -> None:
    train, test = load_sources(DataConfig(image_size=8, train_limit=100, test_limit=30))
    assert len(train) == 100 and len(test) == 30
    assert np.bincount(train.targets).tolist() == [10] * 10
    assert np.bincount(test.targets).tolist() == [3] * 10


# --- npz ---------------------------------------------------------------------------------


def _save(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _toy(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(n, 5, 7, 3), dtype=np.uint8)
    return {"x": x, "y": np.arange(n) % 3, "classes": np.array(["r", "g", "b"])}


def _npz(root: Path, name: str = "toy") -> DataConfig:
    return DataConfig(dataset="npz", root=str(root), name=name)


def test_npz_loads_and_falls_back_to_val(tmp_path: Path) -> None:
    _save(tmp_path / "toy_train.npz", **_toy(6))
    _save(tmp_path / "toy_val.npz", **_toy(3))
    train, test = load_sources(_npz(tmp_path))
    assert len(train) == 6 and len(test) == 3 and train.classes == ["r", "g", "b"]
    assert train.image(2).size == (7, 5) and train.targets.dtype == np.int64


def test_npz_missing_file_lists_the_folder(tmp_path: Path) -> None:
    _save(tmp_path / "other_train.npz", **_toy())
    with pytest.raises(DataError) as err:
        load_sources(_npz(tmp_path))
    msg = str(err.value)
    assert "toy_train.npz" in msg and "toy_test.npz" in msg and "other_train.npz" in msg
    with pytest.raises(DataError, match="does not exist"):
        load_sources(_npz(tmp_path / "nowhere"))


def test_npz_missing_keys(tmp_path: Path) -> None:
    arrays = _toy()
    _save(tmp_path / "toy_train.npz", images=arrays["x"], y=arrays["y"])
    _save(tmp_path / "toy_test.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_sources(_npz(tmp_path))
    assert "'x'" in str(err.value) and "'classes'" in str(err.value)
    assert "images" in str(err.value)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"x": np.zeros((6, 5, 7, 3), dtype=np.float32)}, "uint8"),
        ({"x": np.zeros((6, 3, 5, 7), dtype=np.uint8)}, "HWC"),
        ({"x": np.zeros((6, 5, 7), dtype=np.uint8)}, "(N, H, W, 3)"),
        ({"y": np.zeros(5, dtype=np.int64)}, "one integer label per image"),
        ({"y": np.full(6, 3)}, "labels span"),
        ({"classes": np.array([object(), object(), object()], dtype=object)}, "str array"),
    ],
)
def test_npz_bad_arrays(tmp_path: Path, change: dict[str, np.ndarray], needle: str) -> None:
    _save(tmp_path / "toy_train.npz", **{**_toy(), **change})
    _save(tmp_path / "toy_test.npz", **_toy())
    with pytest.raises(DataError, match="toy_train.npz") as err:
        load_sources(_npz(tmp_path))
    assert needle in str(err.value)


def test_npz_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "toy_train.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _save(tmp_path / "toy_test.npz", **_toy())
    with pytest.raises(DataError, match="cannot read"):
        load_sources(_npz(tmp_path))


@pytest.mark.skipif(
    not (SHARED / "cifar10_train.npz").exists(),
    reason=f"real CIFAR-10 arrays not found at {SHARED} (shared data folder absent)",
)
def test_real_cifar10_npz_with_limits() -> None:
    cfg = DataConfig(
        dataset="npz", root=str(SHARED), name="cifar10", train_limit=500, test_limit=200
    )
    train, test = load_sources(cfg)
    assert isinstance(train, ArraySource)
    assert train.x.shape == (500, 32, 32, 3) and len(test) == 200
    assert np.bincount(train.targets).tolist() == [50] * 10
    assert np.bincount(test.targets).tolist() == [20] * 10
    assert train.classes[0] == "airplane" and train.image(0).size == (32, 32)


# --- imagefolder -------------------------------------------------------------------------


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> None:
    for split, classes in layout.items():
        for cls, count in classes.items():
            (root / split / cls).mkdir(parents=True)
            for k in range(count):
                mode = "L" if k == 0 else "RGB"
                Image.new(mode, (12, 10), color=40 * k).save(root / split / cls / f"{k}.png")


def test_imagefolder_loads(tmp_path: Path) -> None:
    _tree(tmp_path, {"train": {"cat": 3, "dog": 2}, "val": {"cat": 1, "dog": 2}})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    train, test = load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path)))
    assert isinstance(train, FolderSource)
    assert train.classes == test.classes == ["cat", "dog"]
    assert train.targets.tolist() == [0, 0, 0, 1, 1] and test.targets.tolist() == [0, 1, 1]
    img = train.image(0)  # saved as grayscale
    assert img.mode == "RGB" and img.size == (12, 10)


def test_imagefolder_layout_errors(tmp_path: Path) -> None:
    _tree(tmp_path / "a", {"train": {"cat": 2, "dog": 0}, "val": {"cat": 1}})
    with pytest.raises(DataError, match=r"dog holds no images"):
        load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path / "a")))
    _tree(tmp_path / "b", {"train": {"cat": 1}})
    with pytest.raises(DataError, match=r"val does not exist.*ImageNet layout"):
        load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path / "b")))
    _tree(tmp_path / "c", {"train": {"cat": 1}, "val": {"cow": 1}})
    with pytest.raises(DataError, match=r"\['cow'\] are not in train"):
        load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path / "c")))
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path / "d")))
    with pytest.raises(DataError, match="data.root is required"):
        load_sources(DataConfig(dataset="imagefolder"))


def test_imagefolder_corrupt_and_truncated_images(tmp_path: Path) -> None:
    _tree(tmp_path, {"train": {"cat": 2}, "val": {"cat": 1}})
    good = (tmp_path / "train" / "cat" / "1.png").read_bytes()
    (tmp_path / "train" / "cat" / "2.png").write_bytes(b"garbage")
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    big.save(tmp_path / "train" / "cat" / "3.jpg", quality=90)
    data = (tmp_path / "train" / "cat" / "3.jpg").read_bytes()
    (tmp_path / "train" / "cat" / "3.jpg").write_bytes(data[: len(data) // 2])
    train, _ = load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path)))
    assert len(good) > 0 and train.image(1).size == (12, 10)
    with pytest.raises(DataError, match=r"2\.png"):
        train.image(2)
    with pytest.raises(DataError, match=r"3\.jpg.*corrupt or truncated"):
        train.image(3)


# --- cifar (torchvision) -----------------------------------------------------------------


def test_cifar10_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.download=true"):
        load_sources(DataConfig(dataset="cifar10", root=str(tmp_path)))
    with pytest.raises(DataError, match="data.root is required"):
        load_sources(DataConfig(dataset="cifar100"))


# --- data.root naming a file -------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "download", "expected"),
    [
        ("npz", False, r"folder holding cifar10_train\.npz and cifar10_test\.npz"),
        ("imagefolder", False, r"ImageNet layout, root/train/<class>/\* and root/val"),
        ("cifar10", False, r"holds .* cifar-10-batches-py/"),
        ("cifar10", True, r"holds .* cifar-10-batches-py/"),  # not "the download failed"
        ("cifar100", False, r"holds .* cifar-100-python/"),
    ],
)
def test_root_that_is_a_file_says_so_and_what_was_expected(
    tmp_path: Path, dataset: str, download: bool, expected: str
) -> None:
    root = tmp_path / "passwd"
    root.write_text("root:x:0:0\n")
    extra = {"download": download} if dataset.startswith("cifar") else {}
    cfg = DataConfig(dataset=dataset, root=str(root), **extra)
    with pytest.raises(DataError, match=r"data\.root .*passwd is a file, not a folder") as e:
        load_sources(cfg)
    assert e.match(expected) and "does not exist" not in str(e.value)
    assert not list(tmp_path.iterdir())[1:]  # nothing created beside the file


def test_npz_root_naming_an_npz_file_suggests_its_folder_and_prefix(tmp_path: Path) -> None:
    npz = tmp_path / "mine_train.npz"
    np.savez(npz, x=np.zeros((1, 2, 2, 3), np.uint8), y=np.zeros(1, np.int64), classes=["a"])
    with pytest.raises(DataError, match=re.escape(f"data.root={tmp_path}, data.name=its prefix")):
        load_sources(DataConfig(dataset="npz", root=str(npz), name="mine"))


def test_imagefolder_split_that_is_a_file(tmp_path: Path) -> None:
    _tree(tmp_path, {"train": {"cat": 1}})
    (tmp_path / "val").write_text("not a folder")
    with pytest.raises(DataError, match=r"val is a file, not a folder: imagefolder expects"):
        load_sources(DataConfig(dataset="imagefolder", root=str(tmp_path)))
