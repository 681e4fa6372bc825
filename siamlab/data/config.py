"""Typed, validated settings of the data pipeline: which images, and how two views are drawn.

Defaults follow the SimSiam paper (Chen & He, CVPR 2021, Sec. 4 / reference code): the
augmentation of MoCo v2 / SimCLR, used for both views. The CIFAR-10 recipe of the paper's
supplement D uses 32x32 crops and no blur (``image_size=32``, ``augment.blur_p=0``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from siamlab.config.kinds import flatten, kind_union, nest_flat
from siamlab.data.dataset_config import (
    DATASET_CONFIGS,
    DatasetConfig,
    DigitsConfig,
    ImageFolderConfig,
    NpzConfig,
)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

if TYPE_CHECKING:
    DatasetField = DatasetConfig
else:
    DatasetField = kind_union(DATASET_CONFIGS, "kind", "digits")


class AugmentConfig(BaseModel):
    """The random augmentation T applied independently to each of the two views.

    SimSiam paper, Sec. 4 "Implementation details" and reference code: RandomResizedCrop
    (scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8, RandomGrayscale p=0.2,
    GaussianBlur sigma ~ U[0.1, 2.0] with p=0.5, horizontal flip, ImageNet mean/std
    normalisation (siamlab: the dataset's own mean/std where it knows them, digits' and
    CIFAR's, ImageNet's elsewhere; :func:`dataset_stats`). The CIFAR-10 recipe
    (supplement D) sets ``blur_p`` to 0.

    Attributes:
        crop_scale: (min, max) fraction of the image area a random crop covers.
        jitter: ColorJitter (brightness, contrast, saturation, hue) strengths.
        jitter_p: probability of applying the colour jitter.
        grayscale_p: probability of converting a view to grayscale.
        blur_p: probability of a Gaussian blur; 0 leaves the blur out entirely.
        blur_sigma: (min, max) of the uniformly drawn blur sigma, in pixels.
        flip_p: probability of a horizontal flip.
        mean: per-channel mean subtracted after scaling pixels to [0, 1]; None uses the
            dataset's own statistics (:func:`dataset_stats`).
        std: per-channel standard deviation divided by after subtracting the mean; None
            as for ``mean``.

    """

    model_config = ConfigDict(extra="forbid")

    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = Field(0.8, ge=0.0, le=1.0)
    grayscale_p: float = Field(0.2, ge=0.0, le=1.0)
    blur_p: float = Field(0.5, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {v}")
        return v

    @field_validator("blur_sigma")
    @classmethod
    def _check_sigma(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not 0.0 < lo <= hi:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {v}")
        return v

    @field_validator("jitter")
    @classmethod
    def _check_jitter(
        cls, v: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        if min(v) < 0.0 or v[3] > 0.5:
            raise ValueError(
                "jitter is (brightness, contrast, saturation, hue): all >= 0 and hue <= 0.5, "
                f"got {v}"
            )
        return v

    @field_validator("std")
    @classmethod
    def _check_std(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and min(v) <= 0.0:
            raise ValueError(f"std must be > 0 for every channel, got {v}")
        return v


CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: tuple[float, float, float] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, float, float] = (0.2673, 0.2564, 0.2762)
DIGITS_MEAN: tuple[float, float, float] = (0.305, 0.305, 0.305)  # sklearn digits / 16
DIGITS_STD: tuple[float, float, float] = (0.376, 0.376, 0.376)


def dataset_stats(dataset: DatasetConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Default normalisation (mean, std) for a dataset; ImageNet's when unknown.

    Args:
        dataset: the ``data.dataset`` config; an npz file prefix ``cifar10`` /
            ``cifar100`` gets the CIFAR statistics.
    """
    key = dataset.name if isinstance(dataset, NpzConfig) else dataset.kind
    table = {
        "digits": (DIGITS_MEAN, DIGITS_STD),
        "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
        "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    }
    return table.get(key, (IMAGENET_MEAN, IMAGENET_STD))


class DataConfig(BaseModel):
    """Which dataset to read, where from, and at what size.

    Attributes:
        dataset: the image source's per-kind config; written flat in YAML
            (``dataset: npz`` with ``root`` and ``name`` beside it), see
            :mod:`siamlab.data.dataset_config` for each kind's options (``root``,
            ``name``, ``download``, ``max_corrupt_fraction``).
        image_size: side of the square views (and of eval images) fed to the model.
        train_limit: keep a deterministic class-stratified subset of at most this many
            training images (quick runs); None keeps all.
        test_limit: the same for the test split.
        num_workers: DataLoader worker processes.
        pin_memory: page-locked batches for faster host-to-GPU copies; None = on CUDA.
        persistent_workers: keep the workers alive across epochs (the epoch travels
            with each batch's indices, so views stay keyed by (seed, epoch, index)).
        prefetch_factor: batches each worker loads ahead; None = torch's default (2).
        augment_batched: in-memory uint8 datasets (digits, npz, CIFAR) augment whole
            batches of tensors (:mod:`siamlab.data.batched`) instead of one PIL image
            at a time: much faster, the same recipe, but other random draws than the
            PIL path, so off by default. ``auto``: batched when the images are in memory,
            the PIL path for image folders (a study that runs at every profile).
        device_resident: keep the uint8 training images on the training device and make
            each batch there, in the training process (index + batched augmentation, no
            DataLoader or worker; :mod:`siamlab.data.resident`). The views are those of
            the batched loader: the same keyed draws, bit-equal on CPU, equal up to the
            GPU kernels' float rounding on CUDA. Needs the batched views; ``true`` on an
            image-folder dataset or with ``augment_batched=false`` is refused. ``auto``
            (the quick profile's): on when the views are batched and either the device
            is CUDA and the images take at most a quarter of its free memory, or the
            device is the CPU and torch's threads take every core (a DataLoader worker
            would only take turns with them); otherwise the DataLoader, whose worker
            overlaps augmentation with the step on a spare core.
        augment: the two-view augmentation.

    """

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetField = Field(default_factory=DigitsConfig)
    image_size: int = Field(224, ge=1)
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)
    pin_memory: bool | None = None
    persistent_workers: bool = False
    prefetch_factor: int | None = Field(None, ge=1)
    augment_batched: bool | Literal["auto"] = False
    device_resident: bool | Literal["auto"] = False
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _nest_dataset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return nest_flat(data, "dataset", DATASET_CONFIGS, "kind", "digits", "data.")

    @model_validator(mode="after")
    def _check_resident(self) -> DataConfig:
        if self.device_resident is not True:
            return self
        if self.augment_batched is False:
            raise ValueError(
                "data.device_resident=true makes batches with the batched augmentation; "
                "set data.augment_batched=true (or auto), or data.device_resident=false"
            )
        if isinstance(self.dataset, ImageFolderConfig):
            raise ValueError(
                "data.device_resident=true needs an in-memory dataset (digits, npz, "
                "cifar10/100); imagefolder reads image files: set data.device_resident=false "
                "(or auto)"
            )
        return self

    @model_serializer(mode="wrap")
    def _flat_dataset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return flatten(handler(self), "dataset", "kind")
