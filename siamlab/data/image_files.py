"""Image files on disk: the ImageNet folder layout, and a folder of your own images.

``imagefolder`` reads the paper's ImageNet layout, ``root/train/<class>/*`` and
``root/val/<class>/*`` (:func:`scan_split`). ``images`` reads a folder as people keep
them: class subfolders ``root/<class>/**`` (the folder names are the labels) or image
files directly in ``root`` (unlabelled), and splits it itself (:func:`own_images`): a
seeded, class-stratified ``test_fraction`` of every class is the test split. Files are
opened lazily; one that cannot be decoded raises a :class:`~siamlab.errors.CorruptImageError`
naming it (:class:`~siamlab.data.sources.FolderSource`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from siamlab.data.sources import IMAGE_EXTENSIONS, FolderSource, _refuse_file
from siamlab.errors import DataError

UNLABELLED = "unlabelled"  # the one class of a folder without class subfolders
MIN_SPLIT = 2  # images per split: the fewest a spread can be measured on


def scan_split(split: Path, classes: list[str] | None) -> FolderSource:
    """One split of the ImageNet layout: ``split/<class>/*`` (``classes``: train's names)."""
    layout = "a folder in the ImageNet layout, root/train/<class>/* and root/val/<class>/*"
    _refuse_file(split.parent, "imagefolder", layout)
    if split.is_file():
        raise DataError(f"{split} is a file, not a folder: imagefolder expects {layout}.")
    if not split.is_dir():
        raise DataError(
            f"{split} does not exist: imagefolder expects root/train/<class>/* and "
            "root/val/<class>/* (the ImageNet layout). Point data.root at that folder, or use "
            "data.dataset=images for a folder of images that is not split into train/ and val/."
        )
    found = sorted(d.name for d in split.iterdir() if d.is_dir())
    names = found if classes is None else classes
    unknown = sorted(set(found) - set(names))
    if not found or unknown:
        problem = f"classes {unknown} are not in train/" if unknown else "no class folders"
        raise DataError(
            f"{split}: {problem}. Expected the ImageNet layout root/train/<class>/* and "
            "root/val/<class>/*, with the same class folder names in both."
        )
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        folder = split / name
        if not folder.is_dir():
            continue  # a class absent from val is allowed
        imgs = sorted(
            e.path for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not imgs:
            raise DataError(
                f"class folder {folder} holds no images (extensions {IMAGE_EXTENSIONS}); "
                "remove the folder or fill it."
            )
        files += imgs
        labels += [label] * len(imgs)
    return FolderSource(files, np.asarray(labels, dtype=np.int64), names)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS)


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` not hidden (no leading dot), sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden ones left out), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if _is_image(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _no_images(root: Path) -> DataError:
    entries = _visible(root)
    files = [p.name for p in entries if p.is_file()]
    folders = [p.name + "/" for p in entries if p.is_dir()]
    held = ", ".join((files + folders)[:8]) + (", ..." if len(entries) > 8 else "")
    holds = f"it holds {len(files)} other file(s) and {len(folders)} folder(s): {held}"
    return DataError(
        f"no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} in it and in its "
        f"class subfolders); {holds if entries else 'it is empty'}. Point data.root at the "
        "folder that holds the images (or their class folders)."
    )


def _labelled_files(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Files, labels and class names of ``root``: class subfolders, or loose images."""
    entries = _visible(root)
    loose = [p for p in entries if _is_image(p)]
    classes = {p.name: _images_under(p) for p in entries if p.is_dir()}
    classes = {name: imgs for name, imgs in classes.items() if imgs}
    if loose and classes:
        raise DataError(
            f"{root} holds both image files ({', '.join(p.name for p in loose[:3])}, ...) and "
            f"class folders with images ({', '.join(list(classes)[:3])}, ...); put every image "
            "into a class folder (the folder names are the labels), or keep them all loose "
            "(unlabelled)."
        )
    if loose:
        return loose, [0] * len(loose), [UNLABELLED]
    if not classes:
        raise _no_images(root)
    files = [f for imgs in classes.values() for f in imgs]
    labels = [label for label, imgs in enumerate(classes.values()) for _ in imgs]
    return files, labels, list(classes)


def split_test(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A bool mask of the test split: a seeded ``fraction`` of every class (round half even).

    A class of n >= 2 images gives between 1 and n - 1 of them; a class of one stays in train.
    """
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = len(members)
        k = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        test[members[:k]] = True
    return test


def own_images(root: Path, test_fraction: float) -> tuple[FolderSource, FolderSource]:
    """The ``images`` dataset: a folder of your own images, split into (train, test).

    Args:
        root: the folder: ``root/<class>/**`` image files, or image files in ``root``.
        test_fraction: share of each class in the test split (:func:`split_test`).

    Raises:
        DataError: a missing folder, a file, a folder without images, too few images, or
            a folder mixing loose images with class folders.
    """
    _refuse_file(root, "images", "a folder of images, or of class folders of images")
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; set data.root to your images.")
    files, labels, classes = _labelled_files(root)
    y = np.asarray(labels, dtype=np.int64)  # (N,)
    test = split_test(y, test_fraction)  # (N,) bool
    if min(int(test.sum()), int((~test).sum())) < MIN_SPLIT:
        raise DataError(
            f"{root} holds {len(files)} image(s), which data.test_fraction={test_fraction} "
            f"splits into {int((~test).sum())} train and {int(test.sum())} test images; each "
            f"split needs at least {MIN_SPLIT}: add images (or change data.test_fraction)."
        )
    names = [str(f) for f in files]
    train_files = [f for f, t in zip(names, test, strict=True) if not t]
    test_files = [f for f, t in zip(names, test, strict=True) if t]
    return FolderSource(train_files, y[~test], classes), FolderSource(test_files, y[test], classes)
