import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from siamlab.data.config import AugmentConfig
from siamlab.data.transforms import blur_kernel_size, eval_transform, train_transform


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _expected(value: int, aug: AugmentConfig) -> torch.Tensor:
    mean, std = torch.tensor(aug.mean), torch.tensor(aug.std)
    return (value / 255.0 - mean) / std  # (3,)


@pytest.mark.parametrize(("w", "h", "size"), [(40, 30, 32), (8, 8, 16), (300, 200, 64)])
def test_train_transform_shape_and_dtype(w: int, h: int, size: int) -> None:
    out = train_transform(AugmentConfig(), size)(_noise(w, h))
    assert out.shape == (3, size, size) and out.dtype == torch.float32


def test_blur_only_when_its_probability_is_positive() -> None:
    def names(aug: AugmentConfig) -> str:
        return repr(train_transform(aug, 32))

    assert "GaussianBlur" in names(AugmentConfig())
    assert "GaussianBlur" not in names(AugmentConfig(blur_p=0.0))
    assert [blur_kernel_size(s) for s in (8, 32, 96, 224)] == [3, 3, 11, 23]


def test_train_transform_normalises() -> None:
    # a grey image is invariant to crops, flips, grayscale and blur: only the jitter changes it
    aug = AugmentConfig(
        jitter_p=0.0,
        grayscale_p=1.0,
        blur_p=1.0,
        flip_p=1.0,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )
    out = train_transform(aug, 24)(Image.new("RGB", (40, 40), color=(128, 128, 128)))
    expected = _expected(128, aug)[:, None, None].expand(3, 24, 24)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_train_transform_uses_only_torch_rng() -> None:
    transform, img = train_transform(AugmentConfig(), 32), _noise(48, 40)
    torch.manual_seed(5)
    random.seed(1)
    a = transform(img)
    torch.manual_seed(5)
    random.seed(2)
    b = transform(img)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, transform(img))


def test_eval_transform_keeps_images_of_the_target_size() -> None:
    aug = AugmentConfig(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    img = _noise(32, 32)
    out = eval_transform(aug, 32)(img)
    expected = T.Normalize(aug.mean, aug.std)(T.ToTensor()(img))
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    grey = eval_transform(aug, 16)(Image.new("RGB", (16, 16), color=(10, 200, 30)))
    torch.testing.assert_close(
        grey[:, 3, 5],
        (torch.tensor([10, 200, 30]) / 255.0 - torch.tensor(aug.mean)) / torch.tensor(aug.std),
    )


def test_eval_transform_resizes_then_centre_crops() -> None:
    aug = AugmentConfig(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    img = _noise(64, 48)
    out = eval_transform(aug, 32)(img)  # short side 48 -> int(32 * 256 / 224) = 36, crop 32
    reference = T.Compose(
        [T.Resize(36), T.CenterCrop(32), T.ToTensor(), T.Normalize(aug.mean, aug.std)]
    )(img)
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, reference, atol=0, rtol=0)
    assert eval_transform(aug, 224)(_noise(500, 375)).shape == (3, 224, 224)
    before = torch.get_rng_state()
    eval_transform(aug, 32)(img)
    assert torch.equal(before, torch.get_rng_state())  # deterministic: no RNG draws


def test_unset_statistics_follow_the_dataset():
    from siamlab.data.build import resolved_augment
    from siamlab.data.config import CIFAR10_MEAN, DIGITS_STD, DataConfig

    assert resolved_augment(DataConfig(dataset="npz", name="cifar10")).mean == CIFAR10_MEAN
    assert resolved_augment(DataConfig(dataset="digits")).std == DIGITS_STD
    explicit = DataConfig(augment={"mean": (0.1, 0.2, 0.3), "std": (1, 1, 1)})
    assert resolved_augment(explicit).mean == (0.1, 0.2, 0.3)
