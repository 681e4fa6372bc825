"""A run's data fingerprint: which images it trained and was evaluated on, as one string.

The config says where the data is (``data.root``) and which subset a run takes
(``data.train_limit``, ...); the fingerprint says what was there. It hashes what the run
reads after the limits: in-memory images (digits, npz, CIFAR) by their pixels, labels and
class names; image folders by each file's path under the dataset's root, its label and the
class names (not the files' bytes: that would read a whole ImageNet before training).
So the same images moved to another folder keep their fingerprint, and another set of
images under the same ``data.root`` gets another one.

``metrics.nc`` records it (attr ``data_fingerprint``) and so does the checkpoint: a run
resumes, and a finished run is skipped as done, only on the data it was trained on
(:mod:`siamlab.run.checkpointer`, :mod:`siamlab.study.changed_config`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from siamlab.data.sources import ArraySource, FolderSource, ImageSource
from siamlab.data.tolerant import TolerantSource

PREFIX = "blake2b-128:"  # what the hex digest is of; a future scheme gets another prefix


def data_fingerprint(train: ImageSource, test: ImageSource, root: str | None = None) -> str:
    """The fingerprint of a run's (train, test) sources.

    Args:
        train: the training split, after ``data.train_limit``.
        test: the test split, after ``data.test_limit``.
        root: the dataset's folder; image files are hashed by their path below it.

    Returns:
        ``"blake2b-128:<32 hex digits> (<n train> + <n test> images)"``.
    """
    digest = hashlib.blake2b(digest_size=16)
    for split, source in (("train", train), ("test", test)):
        digest.update(f"{split}:{len(source)}:".encode())
        _hash_source(digest, source, root)
    return f"{PREFIX}{digest.hexdigest()} ({len(train)} + {len(test)} images)"


def _hash_source(digest: hashlib.blake2b, source: ImageSource, root: str | None) -> None:
    """Feed ``source``'s images (or file paths), labels and class names to ``digest``."""
    while isinstance(source, TolerantSource):
        source = source.source
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


def same_images(a: str, b: str) -> bool:
    """Whether two recorded fingerprints name the same images (the digest, not the note)."""
    return a.split(" ", 1)[0] == b.split(" ", 1)[0]
