"""Assemble the datasets of a run from its data config: training views and the eval sets."""

from __future__ import annotations

from dataclasses import dataclass

from siamlab.data.config import AugmentConfig, DataConfig, dataset_stats
from siamlab.data.dataset_config import ImageFolderConfig
from siamlab.data.fingerprint import data_fingerprint
from siamlab.data.sources import ImageSource, dataset_root, load_sources
from siamlab.data.tolerant import TolerantSource
from siamlab.data.transforms import eval_transform, train_transform
from siamlab.data.views import EvalDataset, TwoViewDataset

EVAL_KEEP_BYTES = 512 * 2**20  # per eval split (the CIFAR-10 subset at 32 px: 197 MB)


@dataclass(frozen=True)
class DataBundle:
    """The datasets one run needs.

    Attributes:
        train_views: two augmented views per training image (SimSiam pre-training).
        train_eval: training images, eval preprocessing: the kNN monitor's feature bank
            (SimSiam paper, Fig. 2 right, after InstDisc).
        test_eval: test images, eval preprocessing: kNN queries and linear-probe validation.
        num_classes: number of labels (the training split's classes).
        classes: the class names, indexed by label.
        image_shape: shape of one model input, (3, image_size, image_size).
        fingerprint: which images these are (:mod:`siamlab.data.fingerprint`).

    """

    train_views: TwoViewDataset
    train_eval: EvalDataset
    test_eval: EvalDataset
    num_classes: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    fingerprint: str = ""


def build_datasets(cfg: DataConfig, seed: int, pairs: int = 1) -> DataBundle:
    """Load the configured sources and wrap them with the train and eval transforms.

    Args:
        cfg: the data config (dataset, root, size, limits, augmentation).
        seed: the run seed; keys every view (see :class:`TwoViewDataset`).
        pairs: augmented pairs per training image (2 for the "2x" asymmetric loss).

    Returns:
        The training two-view dataset, the two eval datasets and their metadata.

    Raises:
        DataError: the data is missing or malformed (from :func:`load_sources`).

    """
    train, test = load_sources(cfg)
    fingerprint = source_fingerprint(cfg, train, test)
    if isinstance(cfg.dataset, ImageFolderConfig):
        train = TolerantSource(train, cfg.dataset.max_corrupt_fraction)
        test = TolerantSource(test, cfg.dataset.max_corrupt_fraction)
    size = cfg.image_size
    aug = resolved_augment(cfg)
    evaluate = eval_transform(aug, size)
    # in-memory images: each evaluation reuses the preprocessed tensors of the first
    keep = 0 if isinstance(cfg.dataset, ImageFolderConfig) else EVAL_KEEP_BYTES
    return DataBundle(
        train_views=TwoViewDataset(train, train_transform(aug, size), seed, pairs),
        train_eval=EvalDataset(train, evaluate, keep),
        test_eval=EvalDataset(test, evaluate, keep),
        num_classes=len(train.classes),
        classes=tuple(train.classes),
        image_shape=(3, size, size),
        fingerprint=fingerprint,
    )


def source_fingerprint(cfg: DataConfig, train: ImageSource, test: ImageSource) -> str:
    """The fingerprint of the sources ``cfg`` loaded (its image files by path under root)."""
    root = dataset_root(cfg.dataset)
    return data_fingerprint(train, test, None if root is None else str(root))


def fingerprint_of(cfg: DataConfig) -> str:
    """Load the images ``cfg`` names and return their fingerprint (no transforms built).

    Raises:
        DataError: the data is missing or malformed.
    """
    return source_fingerprint(cfg, *load_sources(cfg))


def resolved_augment(cfg: DataConfig) -> AugmentConfig:
    """The augmentation config with ``mean``/``std`` filled from the dataset when unset."""
    mean, std = dataset_stats(cfg.dataset)
    aug = cfg.augment
    return aug.model_copy(update={"mean": aug.mean or mean, "std": aug.std or std})
