"""A run's data fingerprint: which images it trained and was evaluated on, as one string.

The config says where the data is (``data.root``) and which subset a run takes
(``data.train_limit``, ...); the fingerprint says what was there. It hashes what the run
reads after the limits. In-memory images (digits, npz, CIFAR) are hashed by their pixels,
labels and class names (``blake2b-128:``), so the same images moved to another folder
keep their fingerprint and other images under the same ``data.root`` get another one.
Image folders are hashed by each file's path under the dataset's root, its label and the
class names, and by the sizes of up to :data:`SIZED` files per split spread evenly over
its sorted list, not the files' bytes (reading a whole ImageNet before training would
take longer than many runs; 4,096 ``stat`` calls take milliseconds on a local disk and
seconds on a slow network one): ``blake2b-128-files:<names>-<sizes>``. The sizes tell
a re-encoded or resized copy under the same names apart (every JPEG or PNG file's size
moves), not one replaced file or a format whose files all have one size (BMP, PPM), so
such a fingerprint does not let a run move to another ``data.root``
(:func:`hashes_pixels`). Results of 2026-12-07 record the names alone
(``blake2b-128-names:``); they are compared with the names part.

``metrics.nc`` records it (attr ``data_fingerprint``) and so does the checkpoint: a run
resumes, and a finished run is skipped as done, only on the data it was trained on
(:mod:`siamlab.run.checkpointer`, :mod:`siamlab.study.changed_config`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

import numpy as np

from siamlab.data.sources import ArraySource, FolderSource, ImageSource
from siamlab.data.tolerant import TolerantSource

PIXELS = "blake2b-128:"  # the digest of the images' pixels; a future scheme gets another
FILES = "blake2b-128-files:"  # the digests of image files' paths and of sampled sizes
NAMES = "blake2b-128-names:"  # the paths alone: written on 2026-12-07 only
SIZED = 4096  # image files per split whose size is hashed
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
        ``"blake2b-128:<32 hex digits> (<n train> + <n test> images)"``, or
        ``"blake2b-128-files:<32 hex>-<32 hex> (...)"`` where a split is image files
        (hashed by path, and by sampled sizes).
    """
    digest = hashlib.blake2b(digest_size=16)
    sizes = hashlib.blake2b(digest_size=16)
    pixels = True
    for split, source in (("train", train), ("test", test)):
        digest.update(f"{split}:{len(source)}:".encode())
        sizes.update(f"{split}:".encode())
        pixels &= _hash_source(digest, sizes, source, root)
    count = f"({len(train)} + {len(test)} images)"
    if pixels:
        return f"{PIXELS}{digest.hexdigest()} {count}"
    return f"{FILES}{digest.hexdigest()}-{sizes.hexdigest()} {count}"


def _hash_source(
    digest: hashlib.blake2b, sizes: hashlib.blake2b, source: ImageSource, root: str | None
) -> bool:
    """Feed ``source``'s images (or file paths), labels and class names to ``digest``.

    Image files' sampled sizes go to ``sizes``.

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
        sizes.update(_sampled_sizes(source.files).tobytes())
    else:  # a source of another kind: its class and length only
        digest.update(type(source).__name__.encode())
    digest.update(np.ascontiguousarray(source.targets, dtype=np.int64).tobytes())  # (N,)
    digest.update("\0".join(source.classes).encode())
    return pixels


def _sampled_sizes(files: list[str]) -> np.ndarray:
    """The sizes in bytes of up to SIZED of ``files``, evenly spread; -1 where unreadable."""
    picked = np.unique(np.linspace(0, len(files) - 1, min(len(files), SIZED)).astype(np.int64))
    out = np.full(len(picked), -1, dtype=np.int64)  # (k,): a missing file is the reader's
    for k, i in enumerate(picked.tolist()):
        with contextlib.suppress(OSError):
            out[k] = os.stat(files[i]).st_size
    return out


def digest(fingerprint: str) -> str:
    """The fingerprint without its note on the number of images."""
    return fingerprint.split(" ", 1)[0]


def _names_part(digest_: str) -> str:
    """An image folder's digest as the names-only scheme of 2026-12-07 wrote it."""
    if digest_.startswith(FILES):
        return NAMES + digest_[len(FILES) :].split("-", 1)[0]
    return digest_


def same_images(a: str, b: str) -> bool:
    """Whether two recorded fingerprints name the same images (the digest, not the note).

    A names-only record (``blake2b-128-names:``) is compared with the names part.
    """
    da, db = digest(a), digest(b)
    if NAMES in (da[: len(NAMES)], db[: len(NAMES)]):
        return _names_part(da) == _names_part(db)
    return da == db


def other_images_note(trained: str, now: str, done: str) -> str | None:
    """A note where a run's checkpoint is ``done`` (evaluated, ...) on other images.

    Args:
        trained: the run's recorded fingerprint ("" where none: no note).
        now: the fingerprint of the images it is ``done`` on.
        done: what is done on them, in words.
    """
    if not trained or same_images(trained, now):
        return None
    return f"{done} on other images than the run trained on (trained on {trained}; {done} on {now})"


def images_config(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped data config less the keys that do not say which images (NOT_IMAGES)."""
    return {k: v for k, v in data.items() if k not in NOT_IMAGES}


def hashes_pixels(fingerprint: str) -> bool:
    """Whether ``fingerprint`` hashes pixels, so the same one elsewhere is the same images."""
    return fingerprint.startswith(PIXELS)
