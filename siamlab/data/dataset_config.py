"""Per-kind configs of the image source (``data.dataset`` and its sibling options).

Each class declares its name once, in ``kind``; :data:`DATASET_CONFIGS` is the list of
allowed names and :mod:`siamlab.data.sources` registers a loader under each. In YAML the
options sit beside ``data.dataset`` (``dataset: npz``, ``root: ...``, ``name: ...``).

A missing root is reported with a :class:`siamlab.errors.DataError` when the data is
loaded, not here, so that a config can be validated on a machine without the data.
"""

from typing import Literal

from pydantic import Field

from siamlab.config.kinds import KindConfig, kind_registry


class DatasetConfig(KindConfig):
    """Common base: the dataset's registered name."""

    kind: str


class DigitsConfig(DatasetConfig):
    """scikit-learn's bundled 8x8 digits, upsampled to ``data.image_size`` (no files)."""

    kind: Literal["digits"] = "digits"


class NpzConfig(DatasetConfig):
    """uint8 arrays in ``<root>/<name>_train.npz`` and ``<name>_test.npz`` (or ``_val``).

    Attributes:
        root: the folder of the files; None = the ``SIAMLAB_DATA`` environment variable.
        name: the file prefix (``cifar10`` / ``cifar100`` get CIFAR statistics).
    """

    kind: Literal["npz"] = "npz"
    root: str | None = None
    name: str = Field("cifar10", min_length=1)


class CifarConfig(DatasetConfig):
    """A torchvision CIFAR data set.

    Attributes:
        root: the torchvision root.
        download: let torchvision download it into ``root`` when it is missing.
    """

    root: str | None = None
    download: bool = False


class Cifar10Config(CifarConfig):
    """CIFAR-10 (the paper's supplement D)."""

    kind: Literal["cifar10"] = "cifar10"


class Cifar100Config(CifarConfig):
    """CIFAR-100."""

    kind: Literal["cifar100"] = "cifar100"


class ImageFolderConfig(DatasetConfig):
    """A folder with ``train/<class>/*`` and ``val/<class>/*`` (the ImageNet layout).

    Attributes:
        root: that folder.
        max_corrupt_fraction: unreadable images are skipped with a warning (replaced by
            the next readable one) while they stay at most this fraction of the images
            read; beyond it the run fails.
    """

    kind: Literal["imagefolder"] = "imagefolder"
    root: str | None = None
    max_corrupt_fraction: float = Field(0.001, ge=0.0, le=1.0)


class ImagesConfig(DatasetConfig):
    """A folder of your own images: ``root/<class>/*`` (labelled) or ``root/*`` (unlabelled).

    The folder is not split by you: a deterministic, class-stratified ``test_fraction`` of
    its images is the test split, the rest the train split (:mod:`siamlab.data.image_files`).
    An unreadable image is an error naming the file (no skipping).

    Attributes:
        root: that folder.
        test_fraction: the share of each class's images that goes into the test split.
    """

    kind: Literal["images"] = "images"
    root: str | None = None
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)


DATASET_CONFIGS = kind_registry(
    "dataset",
    "kind",
    [DigitsConfig, NpzConfig, Cifar10Config, Cifar100Config, ImageFolderConfig, ImagesConfig],
)
