"""Skip unreadable images with a counted warning, up to a configured fraction.

One corrupt JPEG in 1.28M should not end a week-long run; a damaged dataset
should. A corrupt image is replaced by the next readable one (deterministically,
so views stay reproducible) and counted; once the counted fraction of images read
by this process passes ``max_fraction`` (after ``min_reads`` reads), it fails.
"""

import warnings

import numpy as np
from PIL import Image

from siamlab.data.sources import ImageSource
from siamlab.errors import CorruptImageError, DataError


class TolerantSource(ImageSource):
    """Wraps a lazily decoded source.

    Args:
        source: the wrapped source (e.g. an image folder).
        max_fraction: the largest tolerated fraction of unreadable reads.
        min_reads: reads before the fraction is judged.
    """

    def __init__(self, source: ImageSource, max_fraction: float, min_reads: int = 100) -> None:
        self.source, self.max_fraction, self.min_reads = source, max_fraction, min_reads
        self.targets, self.classes = source.targets, source.classes
        self.reads = 0
        self.corrupt = 0

    def __len__(self) -> int:
        return len(self.source)

    def image(self, i: int) -> Image.Image:
        """The ``i``-th image, or the next readable one if it is corrupt."""
        n = len(self.source)
        for offset in range(n):
            self.reads += 1
            try:
                return self.source.image((i + offset) % n)
            except CorruptImageError as exc:
                self.corrupt += 1
                warnings.warn(f"skipped ({self.corrupt} so far): {exc}", stacklevel=2)
                too_many = self.corrupt > self.max_fraction * max(self.reads, self.min_reads)
                if too_many:
                    raise DataError(
                        f"{self.corrupt} of {self.reads} images read were unreadable, more than "
                        f"data.max_corrupt_fraction={self.max_fraction}; the dataset looks "
                        "damaged: check or re-extract it (or raise the fraction)"
                    ) from exc
        raise DataError("no readable image in the dataset")

    def subset(self, indices: np.ndarray) -> "TolerantSource":
        """A tolerant source over the subset."""
        return TolerantSource(self.source.subset(indices), self.max_fraction, self.min_reads)
