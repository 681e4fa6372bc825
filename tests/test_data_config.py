from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from siamlab.data.build import DataBundle, build_datasets
from siamlab.data.config import AugmentConfig, DataConfig
from siamlab.errors import DataError


def test_augment_defaults_follow_the_paper() -> None:
    aug = AugmentConfig()
    assert aug.crop_scale == (0.2, 1.0)
    assert aug.jitter == (0.4, 0.4, 0.4, 0.1)
    assert (aug.jitter_p, aug.grayscale_p, aug.blur_p, aug.flip_p) == (0.8, 0.2, 0.5, 0.5)
    assert aug.blur_sigma == (0.1, 2.0)
    assert aug.mean is None and aug.std is None  # the dataset's own statistics


@pytest.mark.parametrize(
    "bad",
    [
        {"jitter_p": 1.5},
        {"grayscale_p": -0.1},
        {"blur_p": 2},
        {"flip_p": -1},
        {"crop_scale": (0.5, 0.2)},
        {"crop_scale": (0.0, 1.0)},
        {"crop_scale": (0.2, 1.5)},
        {"blur_sigma": (0.0, 2.0)},
        {"blur_sigma": (2.0, 1.0)},
        {"jitter": (0.4, 0.4, 0.4, 0.6)},
        {"jitter": (-0.1, 0.4, 0.4, 0.1)},
        {"std": (0.2, 0.0, 0.2)},
        {"crop_scale": (0.2, 0.5, 1.0)},
        {"colour": 0.4},
    ],
)
def test_augment_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AugmentConfig.model_validate(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"dataset": "mnist"},
        {"image_size": 0},
        {"train_limit": 0},
        {"test_limit": -5},
        {"num_workers": -1},
        {"name": ""},
        {"roots": "/data"},
        {"augment": {"blur_p": 3}},
    ],
)
def test_data_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DataConfig.model_validate(bad)


def test_data_config_accepts_nested_dict() -> None:
    cfg = DataConfig.model_validate({"dataset": "npz", "root": "x", "augment": {"blur_p": 0}})
    assert cfg.augment.blur_p == 0 and cfg.augment.jitter_p == 0.8
    assert DataConfig().augment is not DataConfig().augment


def test_build_digits_bundle() -> None:
    bundle = build_datasets(DataConfig(image_size=16, train_limit=200, test_limit=50), seed=3)
    assert isinstance(bundle, DataBundle)
    assert bundle.num_classes == 10 and bundle.classes == tuple(str(d) for d in range(10))
    assert bundle.image_shape == (3, 16, 16)
    assert len(bundle.train_views) == len(bundle.train_eval) == 200
    assert len(bundle.test_eval) == 50
    v1, v2, label, i = bundle.train_views[7]
    assert v1.shape == v2.shape == bundle.image_shape and v1.dtype == torch.float32
    assert i == 7 and label == bundle.train_eval.source.targets[7]
    x, label, i = bundle.test_eval[4]
    assert x.shape == bundle.image_shape and i == 4
    with pytest.raises(AttributeError):
        bundle.num_classes = 3  # type: ignore[misc]


def _write_npz(folder: Path, name: str, n: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    np.savez(folder / name, x=x, y=np.arange(n) % 2, classes=np.array(["a", "b"]))


def test_npz_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_npz(tmp_path, "toy_train.npz", 6)
    _write_npz(tmp_path, "toy_test.npz", 4)
    monkeypatch.delenv("SIAMLAB_DATA", raising=False)
    cfg = DataConfig(dataset="npz", name="toy", image_size=8)
    with pytest.raises(DataError, match="SIAMLAB_DATA"):
        build_datasets(cfg, seed=0)
    monkeypatch.setenv("SIAMLAB_DATA", str(tmp_path))
    bundle = build_datasets(cfg, seed=0)
    assert len(bundle.train_views) == 6 and len(bundle.test_eval) == 4
    assert bundle.classes == ("a", "b")
