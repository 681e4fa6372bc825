"""Image transforms: the SimSiam two-view augmentation and the evaluation preprocessing.

All randomness comes from torch's global (CPU) RNG, which torchvision's transforms use
throughout, so :class:`siamlab.data.views.TwoViewDataset` can key it per sample.
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms as T

from siamlab.data.config import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig

EVAL_RESIZE_RATIO = 256 / 224  # the paper's val recipe: Resize(256) + CenterCrop(224)


def _normalize(aug: AugmentConfig) -> T.Normalize:
    """Normalise with ``aug``'s statistics (ImageNet's when unset; see ``resolved_augment``)."""
    return T.Normalize(aug.mean or IMAGENET_MEAN, aug.std or IMAGENET_STD)


def blur_kernel_size(size: int) -> int:
    """Return the Gaussian blur kernel side: about 10% of the crop side, odd, at least 3.

    The 10% rule is SimCLR's (Chen et al. 2020, App. A), whose augmentation SimSiam reuses.
    """
    k = max(3, round(0.1 * size))
    return k if k % 2 == 1 else k + 1


def train_transform(aug: AugmentConfig, size: int) -> T.Compose:
    """Build the random augmentation applied to each view: PIL image -> (3, size, size) float.

    SimSiam paper, Sec. 4: RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1)
    with p=0.8, RandomGrayscale p=0.2, GaussianBlur sigma ~ U[0.1, 2] with p=0.5, horizontal
    flip, then normalisation by ``aug.mean``/``aug.std`` (ImageNet's in the paper; the
    dataset's own where siamlab knows them, :func:`~siamlab.data.config.dataset_stats`).
    The blur is left out when ``aug.blur_p`` is 0
    (the CIFAR-10 recipe of supplement D).

    Args:
        aug: augmentation strengths and probabilities.
        size: side of the output crop.

    Returns:
        A callable mapping an RGB PIL image to a normalised tensor (3, size, size).

    """
    steps: list[object] = [
        T.RandomResizedCrop(size, scale=aug.crop_scale),
        T.RandomApply([T.ColorJitter(*aug.jitter)], p=aug.jitter_p),
        T.RandomGrayscale(p=aug.grayscale_p),
    ]
    if aug.blur_p > 0:
        blur = T.GaussianBlur(blur_kernel_size(size), sigma=aug.blur_sigma)
        steps.append(T.RandomApply([blur], p=aug.blur_p))
    steps += [
        T.RandomHorizontalFlip(p=aug.flip_p),
        T.ToTensor(),  # (3, size, size) in [0, 1]
        _normalize(aug),
    ]
    return T.Compose(steps)


class ResizeCenterCrop:
    """Resize the short side to ``size * 256 / 224`` then centre-crop ``size``.

    Images that are already ``size`` x ``size`` pass unchanged, so small datasets (CIFAR at
    32, digits at their load size) are evaluated on their full, unresized pixels.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.resize = T.Resize(int(size * EVAL_RESIZE_RATIO))
        self.crop = T.CenterCrop(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        """Return ``img`` as a ``size`` x ``size`` image (no-op when it already is)."""
        if img.size == (self.size, self.size):
            return img
        out: Image.Image = self.crop(self.resize(img))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, resize={self.resize.size})"


def eval_transform(aug: AugmentConfig, size: int) -> T.Compose:
    """Build the deterministic preprocessing of evaluation images (kNN bank, test set).

    SimSiam paper, linear evaluation: Resize(256) + CenterCrop(224), scaled here to ``size``;
    images already ``size`` x ``size`` are only normalised.

    Args:
        aug: supplies the normalisation ``mean`` and ``std``.
        size: side of the output image.

    Returns:
        A callable mapping an RGB PIL image to a normalised tensor (3, size, size).

    """
    return T.Compose([ResizeCenterCrop(size), T.ToTensor(), _normalize(aug)])
