"""A run's data fingerprint: which images it trained and was evaluated on, as one string.

The config says where the data is (``data.root``) and which subset a run takes
(``data.train_limit``, ...); the fingerprint says what was there. It hashes what the run
reads after the limits. In-memory images (digits, npz, CIFAR) are hashed by their pixels,
labels and class names (``blake2b-128:``), so the same images moved to another folder
keep their fingerprint and other images under the same ``data.root`` get another one.
Image folders are hashed by each file's path under the dataset's root, its label and the
class names, not the files' bytes (reading a whole ImageNet before training would take
longer than many runs): ``blake2b-128-names:``. Such a fingerprint tells other file
names apart, not other pixels under the same names, so it does not let a run move to
another ``data.root`` (:func:`hashes_pixels`).

``metrics.nc`` records it (attr ``data_fingerprint``) and so does the checkpoint: a run
resumes, and a finished run is skipped as done, only on the data it was trained on
(:mod:`siamlab.run.checkpointer`, :mod:`siamlab.study.changed_config`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from siamlab.data.sources import ArraySource, FolderSource, ImageSource
from siamlab.data.tolerant import TolerantSource

PIXELS = "blake2b-128:"  # the digest of the images' pixels; a future scheme gets another
NAMES = "blake2b-128-names:"  # the digest of image files' paths under the root
# data config keys of how the loader hands batches over, which change no value
HAND_OVER = ("pin_memory", "persistent_workers", "prefetch_factor", "download")
# data config keys that do not say which images a run reads: its augmentation and how
# its batches are made and handed over
NOT_IMAGES = frozenset({"augment", "augment_batched", "device_resident", "num_workers", *HAND_OVER})


def data_fingerprint(train: ImageSource, test: ImageSource, root: str | None = None) -> str:
    """The fingerprint of a run's (train, test) sources.

    Args:
        train: the training split, after ``data.train_limit``.
        test: the test split, after ``data.test_limit``.
        root: the dataset's folder; image files are hashed by their path below it.

    Returns:
        ``"blake2b-128:<32 hex digits> (<n train> + <n test> images)"``, or with
        ``blake2b-128-names:`` where a split is image files (hashed by path).
    """
    digest = hashlib.blake2b(digest_size=16)
    pixels = True
    for split, source in (("train", train), ("test", test)):
        digest.update(f"{split}:{len(source)}:".encode())
        pixels &= _hash_source(digest, source, root)
    prefix = PIXELS if pixels else NAMES
    return f"{prefix}{digest.hexdigest()} ({len(train)} + {len(test)} images)"


def _hash_source(digest: hashlib.blake2b, source: ImageSource, root: str | None) -> bool:
    """Feed ``source``'s images (or file paths), labels and class names to ``digest``.

    Returns:
        Whether its pixels were hashed (False: file paths, or a source of another kind).
    """
    while isinstance(source, TolerantSource):
        source = source.source
    pixels = isinstance(source, ArraySource)
    if isinstance(source, ArraySource):
        digest.update(repr(source.x.shape).encode())
        digest.update(np.ascontiguousarray(source.x).data)  # (N, H, W, 3) uint8
    elif isinstance(source, FolderSource):
        prefix = "" if root is None else root.rstrip("/\\") + "/"
        names = (f[len(prefix) :] if prefix and f.startswith(prefix) else f for f in source.files)
        digest.update("\0".join(names).encode("utf-8", "surrogateescape"))
    else:  # a source of another kind: its class and length only
        digest.update(type(source).__name__.encode())
    digest.update(np.ascontiguousarray(source.targets, dtype=np.int64).tobytes())  # (N,)
    digest.update("\0".join(source.classes).encode())
    return pixels


def digest(fingerprint: str) -> str:
    """The fingerprint without its note on the number of images."""
    return fingerprint.split(" ", 1)[0]


def same_images(a: str, b: str) -> bool:
    """Whether two recorded fingerprints name the same images (the digest, not the note)."""
    return digest(a) == digest(b)


def images_config(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped data config less the keys that do not say which images (NOT_IMAGES)."""
    return {k: v for k, v in data.items() if k not in NOT_IMAGES}


def hashes_pixels(fingerprint: str) -> bool:
    """Whether ``fingerprint`` hashes pixels, so the same one elsewhere is the same images."""
    return fingerprint.startswith(PIXELS)
