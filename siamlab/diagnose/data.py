"""What ``--data`` names: a built-in dataset or a path, turned into the ``data`` config.

``digits``, ``cifar10``, ``cifar100``: the built-in datasets (CIFAR's folder from
``--set data.root=...``). A path is read by what it holds:

- an ``.npz`` file ``<name>_<split>.npz``: the ``npz`` dataset of its folder and prefix
  (train and test files both, as siamlab's npz data sets are pairs);
- a folder holding ``<name>_train.npz``: that ``npz`` dataset (one prefix only);
- a folder with ``train/`` (and ``val/``): the ImageNet layout (``imagefolder``);
- any other folder: your own images (``images``: class subfolders or loose files,
  split by :mod:`siamlab.data.image_files`).

A checkpoint's network expects the normalisation it was trained with, so when a siamlab
checkpoint is diagnosed on other data its run's mean and std are kept; the run's
``train_limit`` / ``test_limit`` belong to its own data and are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siamlab.errors import DataError

BUILT_IN = ("digits", "cifar10", "cifar100")
_SPLITS = ("_train", "_test", "_val")


def _npz_prefix(file: Path) -> str:
    stem = file.stem
    for split in _SPLITS:
        if stem.endswith(split):
            return stem[: -len(split)]
    raise DataError(
        f"--data {file}: an npz data set is a pair <name>_train.npz + <name>_test.npz (or "
        "_val); name the file so, or give the folder holding the pair"
    )


def dataset_of(spec: str) -> dict[str, Any]:
    """The flat ``data.dataset`` keys (``dataset``, ``root``, ``name``) that ``spec`` names.

    Raises:
        DataError: ``spec`` is neither a built-in dataset nor an existing file or folder,
            or a folder holds several npz data sets.
    """
    if spec in BUILT_IN:
        return {"dataset": spec}
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(
                f"--data {path} is a file but not an .npz; give an .npz data set, a folder "
                f"of images or a built-in dataset ({', '.join(BUILT_IN)})"
            )
        return {"dataset": "npz", "root": str(path.parent), "name": _npz_prefix(path)}
    if not path.is_dir():
        raise DataError(
            f"--data {spec}: no such file or folder, and not a built-in dataset "
            f"({', '.join(BUILT_IN)}). Give a folder of images (class subfolders or loose "
            "files), an ImageNet-layout folder (train/, val/), an .npz data set or a built-in."
        )
    names = sorted(p.name.removesuffix("_train.npz") for p in path.glob("*_train.npz"))
    if len(names) > 1:
        raise DataError(
            f"--data {path} holds several npz data sets ({', '.join(names)}); name one, "
            f"e.g. --data {path / (names[0] + '_test.npz')}"
        )
    if names:
        return {"dataset": "npz", "root": str(path), "name": names[0]}
    if (path / "train").is_dir():
        return {"dataset": "imagefolder", "root": str(path)}
    return {"dataset": "images", "root": str(path)}


def data_overrides(base: dict[str, Any], spec: str | None, keep_normalisation: bool) -> dict:
    """``base``'s ``data`` section with the dataset ``spec`` names (``base`` when None).

    Args:
        base: the ``data`` section of the config the checkpoint is diagnosed under.
        spec: the ``--data`` value.
        keep_normalisation: pin the mean/std ``base`` resolves to (a trained network's).
    """
    if spec is None:
        return base
    from siamlab.data.build import resolved_augment
    from siamlab.data.config import DataConfig

    new = {k: v for k, v in base.items() if k not in _DATASET_KEYS}
    new |= dataset_of(spec)
    if keep_normalisation:
        aug = resolved_augment(DataConfig.model_validate(base))
        new["augment"] = {**base.get("augment", {}), "mean": aug.mean, "std": aug.std}
    return new


# keys of the old dataset dropped when --data names another: its kind's options, its limits
_DATASET_KEYS = frozenset(
    {"dataset", "root", "name", "download", "max_corrupt_fraction", "test_fraction"}
    | {"train_limit", "test_limit"}
)
