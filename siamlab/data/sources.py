"""Image sources (indexable RGB PIL images with int labels) and the loaders of each dataset.

Every dataset becomes a (train, test) pair: in-memory uint8 arrays (:class:`ArraySource`: digits,
npz, CIFAR) or lazily opened files (:class:`FolderSource`: the paper's ImageNet folder layout, or
a folder of your own images; the folders are scanned in :mod:`siamlab.data.image_files`).
"""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from siamlab.data.config import DataConfig
from siamlab.data.dataset_config import (
    CifarConfig,
    DatasetConfig,
    ImageFolderConfig,
    ImagesConfig,
    NpzConfig,
)
from siamlab.errors import CorruptImageError, DataError
from siamlab.registry import Registry

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageSource(ABC):
    """N labelled RGB images; ``targets`` is int64 (N,), ``classes`` names each label."""

    targets: np.ndarray
    classes: list[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image(self, i: int) -> Image.Image:
        """Return the ``i``-th image, in RGB mode."""

    @abstractmethod
    def subset(self, indices: np.ndarray) -> ImageSource:
        """Return a source of only the images at ``indices`` (in that order)."""


class ArraySource(ImageSource):
    """Images held in memory as a uint8 array (N, H, W, 3)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> None:
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y):
            raise ValueError(f"expected uint8 (N, H, W, 3) and N labels, got {x.shape} {x.dtype}")
        self.x = np.ascontiguousarray(x)  # (N, H, W, 3)
        self.targets = np.asarray(y, dtype=np.int64)  # (N,)
        self.classes = [str(c) for c in classes]

    def __len__(self) -> int:
        return len(self.x)

    def image(self, i: int) -> Image.Image:
        """Return the ``i``-th image as an RGB PIL image."""
        return Image.fromarray(self.x[i])

    def subset(self, indices: np.ndarray) -> ArraySource:
        """Return a source holding a copy of the images at ``indices``."""
        return ArraySource(self.x[indices], self.targets[indices], self.classes)


class FolderSource(ImageSource):
    """Image files opened lazily with PIL; a corrupt file raises a DataError naming it."""

    def __init__(self, files: Sequence[str | Path], y: np.ndarray, classes: Sequence[str]) -> None:
        self.files = [str(f) for f in files]  # str: cheap to pickle into DataLoader workers
        self.targets = np.asarray(y, dtype=np.int64)  # (N,)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> Image.Image:
        """Open, decode and convert the ``i``-th file to RGB."""
        path = self.files[i]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")  # convert() loads all pixels: truncation fails here
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise CorruptImageError(
                f"cannot read image {path} (sample {i}): {e}. The file is corrupt or truncated; "
                "delete or replace it (or re-extract the dataset) and run again."
            ) from e

    def subset(self, indices: np.ndarray) -> FolderSource:
        """Return a source of the files at ``indices``."""
        return FolderSource([self.files[j] for j in indices], self.targets[indices], self.classes)


def stratified_indices(targets: np.ndarray, limit: int | None) -> np.ndarray:
    """Return the indices of a deterministic class-stratified subset of at most ``limit`` samples.

    Each class is shuffled with a fixed seed; a sample at rank r of a class of size n gets the
    key (r + 0.5) / n and the ``limit`` smallest keys are kept, so every class keeps a share
    proportional to its size. The result is sorted, and identical on every call.
    """
    n = len(targets)
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(0)  # fixed: a limit always keeps the same images
    keys = np.empty(n)
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((targets, keys))  # ties broken by class
    return np.sort(order[:limit])


def _load_digits(size: int) -> tuple[ImageSource, ImageSource]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    def upsample(ims: np.ndarray) -> np.ndarray:  # (N, 8, 8) uint8 -> (N, S, S, 3)
        big = [Image.fromarray(m).resize((size, size), Image.Resampling.BILINEAR) for m in ims]
        return np.repeat(np.stack([np.asarray(b) for b in big])[..., None], 3, axis=-1)

    digits = load_digits()
    small = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0..255
    y = digits.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    train, test = (ArraySource(upsample(small[k]), y[k], list("0123456789")) for k in (tr, te))
    return train, test


def _read_npz(path: Path) -> ArraySource:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y", "classes") if k not in f.files]
            if missing:
                raise DataError(
                    f"{path} lacks the array(s) {missing}; it holds {sorted(f.files)}. Expected "
                    "x (uint8 N x H x W x 3), y (int labels, N) and classes (str, one per label)."
                )
            x, y, classes = f["x"], f["y"], f["classes"]
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # not an npz / object arrays
        raise DataError(
            f"cannot read {path}: {e}. Expected an .npz (np.savez) with x, y and classes "
            "(classes as a str array, not objects)."
        ) from e
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(
            f"{path}: x has shape {x.shape} and dtype {x.dtype}; expected uint8 (N, H, W, 3) RGB "
            "in HWC order: convert it, e.g. x.transpose(0, 2, 3, 1).astype(np.uint8) from NCHW."
        )
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: y has shape {y.shape} and dtype {y.dtype} for {len(x)} images; expected "
            "one integer label per image, shape (N,)."
        )
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        msg = f"labels span {y.min()}..{y.max()}; expected 0..{len(classes) - 1} (one per class)"
        raise DataError(f"{path}: {msg}, as classes has {len(classes)} names.")
    return ArraySource(x, y, [str(c) for c in classes])


def _refuse_file(root: Path, dataset: str, expected: str) -> None:
    """Raise when data.root names a file: every dataset kind reads a folder."""
    if root.is_file():
        raise DataError(
            f"data.root {root} is a file, not a folder: dataset {dataset!r} expects {expected}. "
            "Set data.root to that folder."
        )


def _load_npz(root: Path, name: str) -> tuple[ImageSource, ImageSource]:
    expected = f"a folder holding {name}_train.npz and {name}_test.npz (or {name}_val.npz)"
    hint = f" (for {root.name}: data.root={root.parent}, data.name=its prefix before _train)"
    _refuse_file(root, "npz", expected + (hint if root.suffix == ".npz" else ""))
    if not root.is_dir():
        raise DataError(f"npz folder {root} does not exist; set data.root or SIAMLAB_DATA.")
    train, test, val = (root / f"{name}_{s}.npz" for s in ("train", "test", "val"))
    test = val if val.exists() and not test.exists() else test
    for needed in (train, test):
        if not needed.exists():
            present = sorted(p.name for p in root.iterdir())
            listing = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "")
            raise DataError(
                f"{needed} not found. Expected {name}_train.npz and {name}_test.npz (or "
                f"{name}_val.npz) in {root}, which holds: {listing or '(nothing)'}. "
                "Set data.name to the file prefix or data.root to the right folder."
            )
    return _read_npz(train), _read_npz(test)


def _load_cifar(cfg: CifarConfig, root: Path) -> tuple[ImageSource, ImageSource]:
    from torchvision import datasets

    cls = datasets.CIFAR10 if cfg.kind == "cifar10" else datasets.CIFAR100
    expected = f"the folder that holds (or, with data.download=true, receives) {cls.base_folder}/"
    _refuse_file(root, cfg.kind, expected)
    try:
        splits = [cls(str(root), train=t, download=cfg.download) for t in (True, False)]
    except (RuntimeError, OSError) as e:  # missing / corrupt files, or a failed download
        hint = "pass --set data.download=true to download it, or point data.root to it"
        hint = "the download failed: check the network" if cfg.download else hint
        raise DataError(f"{cfg.kind} not found under {root} ({e}); {hint}.") from e
    train, test = (ArraySource(d.data, np.asarray(d.targets), d.classes) for d in splits)
    return train, test


Loader = Callable[[DatasetConfig, int], tuple[ImageSource, ImageSource]]
LOADERS: Registry[Loader] = Registry("dataset")  # data.dataset -> (train, test) loader


def _root(cfg: NpzConfig | CifarConfig | ImageFolderConfig | ImagesConfig) -> Path:
    env = os.environ.get("SIAMLAB_DATA") if isinstance(cfg, NpzConfig) else None
    root = cfg.root or env
    if not root:
        hint = " (or the SIAMLAB_DATA environment variable)" if isinstance(cfg, NpzConfig) else ""
        raise DataError(
            f"data.root is required for dataset {cfg.kind!r}: --set data.root=PATH{hint}."
        )
    return Path(root).expanduser()


@LOADERS.register("digits")
def _digits(cfg: DatasetConfig, image_size: int) -> tuple[ImageSource, ImageSource]:
    return _load_digits(image_size)


@LOADERS.register("npz")
def _npz(cfg: DatasetConfig, image_size: int) -> tuple[ImageSource, ImageSource]:
    assert isinstance(cfg, NpzConfig)
    return _load_npz(_root(cfg), cfg.name)


@LOADERS.register("cifar10")
@LOADERS.register("cifar100")
def _cifar(cfg: DatasetConfig, image_size: int) -> tuple[ImageSource, ImageSource]:
    assert isinstance(cfg, CifarConfig)
    return _load_cifar(cfg, _root(cfg))


@LOADERS.register("imagefolder")
def _imagefolder(cfg: DatasetConfig, image_size: int) -> tuple[ImageSource, ImageSource]:
    from siamlab.data.image_files import scan_split  # imports this module's FolderSource

    assert isinstance(cfg, ImageFolderConfig)
    train = scan_split(_root(cfg) / "train", None)
    return train, scan_split(_root(cfg) / "val", train.classes)


@LOADERS.register("images")
def _images(cfg: DatasetConfig, image_size: int) -> tuple[ImageSource, ImageSource]:
    from siamlab.data.image_files import own_images

    assert isinstance(cfg, ImagesConfig)
    return own_images(_root(cfg), cfg.test_fraction)


def dataset_root(cfg: DatasetConfig) -> Path | None:
    """The folder ``cfg``'s images are read from (None for the bundled digits)."""
    if isinstance(cfg, NpzConfig | CifarConfig | ImageFolderConfig | ImagesConfig):
        return _root(cfg)
    return None


def load_sources(cfg: DataConfig) -> tuple[ImageSource, ImageSource]:
    """Load the (train, test) sources ``cfg`` describes, subset to the configured limits.

    Raises:
        DataError: the data is missing or malformed; the message says what to do.

    """
    train, test = LOADERS.get(cfg.dataset.kind)(cfg.dataset, cfg.image_size)
    if cfg.train_limit is not None:
        train = train.subset(stratified_indices(train.targets, cfg.train_limit))
    if cfg.test_limit is not None:
        test = test.subset(stratified_indices(test.targets, cfg.test_limit))
    return train, test
