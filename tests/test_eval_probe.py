import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from siamlab.data.sources import ArraySource
from siamlab.errors import ConfigError
from siamlab.evaluation import augmented_probe
from siamlab.evaluation.augmented_probe import KeyedAugmented, probe_augmented
from siamlab.evaluation.features import BackboneChangedError, assert_unchanged, snapshot
from siamlab.evaluation.knn_eval import KnnRecipe, knn_evaluate
from siamlab.evaluation.linear_probe import ProbeRecipe, create_classifier, probe_fast

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


class Features(Dataset):
    """Samples are feature vectors already: (x, label, index)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i]), i


def _blobs(n: int, seed: int, classes: int = 4, dim: int = 12):
    """Linearly separable classes: Gaussian blobs around far-apart centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(classes, dim) * 8.0
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, dim, generator=g), y


def _frozen_backbone(dim: int = 12) -> nn.Module:
    """A 'backbone' with BN, whose running statistics would move in train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(dim, 64), nn.BatchNorm1d(64), nn.ReLU())
    net[1].running_mean.fill_(0.3)
    return net


@pytest.mark.parametrize(
    "recipe",
    [
        ProbeRecipe(optimizer="sgd", base_lr=0.1, batch_size=64, epochs=20),
        # LARS moves |W| by ~lr x 0.001 per step: a large lr for a few hundred steps
        ProbeRecipe(optimizer="lars", base_lr=20.0, batch_size=64, epochs=20, standardize=True),
    ],
)
def test_probe_recovers_separable_labels_and_leaves_the_backbone_unchanged(recipe):
    train, val = Features(*_blobs(800, 0)), Features(*_blobs(400, 1))
    backbone = _frozen_backbone()
    before = snapshot(backbone)
    res = probe_fast(backbone, train, val, 4, recipe, CPU, batch_size=100, progress=False)
    assert res.top1 >= 0.99 and res.top5 == 1.0 and res.path == "fast"
    assert_unchanged(before, backbone)  # parameters and BN running statistics
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in before.items())


def test_backbone_change_is_detected_loudly():
    backbone = _frozen_backbone()
    before = snapshot(backbone)
    backbone.train()(torch.randn(8, 12))  # BN in train mode revises its running mean
    with pytest.raises(BackboneChangedError, match=r"1\.running_mean"):
        assert_unchanged(before, backbone)


def test_classifier_init_and_recipe_checks():
    fc = create_classifier(2048, 1000, seed=0)
    assert fc.bias.abs().max() == 0 and abs(fc.weight.std().item() - 0.01) < 2e-4
    assert ProbeRecipe(base_lr=0.02, batch_size=4096).lr == pytest.approx(0.32)
    with pytest.raises(ConfigError):
        ProbeRecipe(path="augmented", standardize=True)
    with pytest.raises(ConfigError):
        KnnRecipe(bank="val")


def test_knn_eval_on_separable_features():
    splits = {"train": Features(*_blobs(400, 0)), "test": Features(*_blobs(200, 1))}
    acc = knn_evaluate(nn.Identity(), splits, 4, KnnRecipe(k=10), CPU, progress=False)
    assert acc["top1"] == 1.0


def _images(n: int, seed: int) -> ArraySource:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, size=(n, 8, 8, 3), dtype=np.uint8)
    x[y == 1] += 150  # bright vs dark images
    return ArraySource(x, y, ["dark", "bright"])


def test_augmented_probe_resumes_exactly_after_an_interruption(tmp_path, monkeypatch):
    from torchvision import transforms as T

    from siamlab.data.views import EvalDataset

    to_tensor = T.ToTensor()
    source = _images(32, 0)
    val = EvalDataset(_images(16, 1), to_tensor)
    aug = augmented_probe.probe_train_transform(8, (0.5,) * 3, (0.25,) * 3, (0.5, 1.0))
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())  # fmt: skip
    recipe = ProbeRecipe(path="augmented", optimizer="sgd", base_lr=0.5, batch_size=8, epochs=3)
    key = {"checkpoint": "test"}

    def run(state):
        train = KeyedAugmented(source, aug, recipe.seed)
        return probe_augmented(backbone, train, val, 2, recipe, CPU, state, key, progress=False)

    full = run(tmp_path / "a.pt")
    calls = {"n": 0}
    real_step = augmented_probe.train_step

    def failing_step(*args):
        calls["n"] += 1
        if calls["n"] == 6:  # in the middle of epoch 2 (4 steps per epoch)
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(augmented_probe, "train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(augmented_probe, "train_step", real_step)
    resumed = run(tmp_path / "b.pt")
    assert resumed == full
    a = torch.load(tmp_path / "a.pt", weights_only=False)["fc"]
    b = torch.load(tmp_path / "b.pt", weights_only=False)["fc"]
    assert all(torch.equal(a[k], b[k]) for k in a)
