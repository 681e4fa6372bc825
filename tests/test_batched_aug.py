"""The batched augmentation of in-memory uint8 datasets (data.augment_batched)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from siamlab.data.batched import (
    N_UNIFORMS,
    BatchedTwoViewDataset,
    _gaussian_blur,
    crop_boxes,
    keyed_uniforms,
    with_batched_views,
)
from siamlab.data.build import build_datasets
from siamlab.data.colour import OPS, hsv_to_rgb, jitter, rgb_to_hsv
from siamlab.data.config import AugmentConfig, DataConfig
from siamlab.data.sources import ArraySource, FolderSource
from siamlab.errors import DataError
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from tests.conftest import tiny_runs

HALF = (0.5, 0.5, 0.5)
OFF = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0, "flip_p": 0.0, "mean": HALF, "std": HALF}


def _source(n: int = 24, side: int = 12) -> ArraySource:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    return ArraySource(x, np.arange(n) % 3, ["a", "b", "c"])


def _views(size: int = 8, seed: int = 0, **aug: object) -> BatchedTwoViewDataset:
    recipe = AugmentConfig(**{"mean": HALF, "std": HALF, **aug})
    return BatchedTwoViewDataset(_source(), recipe, size, seed)


def test_shapes_dtype_and_normalisation():
    views = _views(size=8)
    items = views.__getitems__([3, 0, 7])
    assert [(i[2], i[3]) for i in items] == [(0, 3), (0, 0), (1, 7)]  # (label, index)
    v1, v2 = items[0][0], items[0][1]
    assert v1.shape == v2.shape == (3, 8, 8) and v1.dtype == torch.float32
    assert float(v1.min()) >= -1.0 - 1e-6 and float(v1.max()) <= 1.0 + 1e-6  # [0,1] -> [-1,1]
    # no augmentation, full-size crop: exactly the normalised image
    plain = _views(size=12, crop_scale=(1.0, 1.0), **OFF)
    x = torch.from_numpy(_source().x[5]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(plain[5][0], (x - 0.5) / 0.5, atol=1e-5, rtol=0)


def test_keyed_by_seed_epoch_index_not_by_batch():
    views = _views()
    alone = views[5]
    inside = views.__getitems__([9, 5, 2, 11])[1]
    for a, b in zip(alone[:2], inside[:2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    again = _views()[5]  # another instance (another worker or process)
    torch.testing.assert_close(again[0], alone[0], atol=0, rtol=0)
    views.set_epoch(1)
    assert not torch.allclose(views[5][0], alone[0])  # a new epoch, new views
    assert not torch.allclose(_views(seed=1)[5][0], alone[0])  # a new seed, new views
    assert not torch.allclose(alone[0], alone[1])  # the two views differ


def test_keyed_uniforms_range_and_independence():
    u = keyed_uniforms(np.array([1, 1, 2], dtype=np.uint64), np.array([0, 1, 0]), N_UNIFORMS)
    assert u.shape == (3, N_UNIFORMS) and u.min() >= 0 and u.max() < 1
    assert len({tuple(r) for r in u}) == 3
    many = keyed_uniforms(np.zeros(4000, dtype=np.uint64), np.arange(4000), 4)
    assert abs(many.mean() - 0.5) < 0.01 and abs(many.std() - 12**-0.5) < 0.01


@pytest.mark.parametrize("scale", [(0.2, 1.0), (0.08, 0.1), (0.5, 0.6)])
def test_crop_scale_range_is_respected(scale):
    side = 200
    u = torch.from_numpy(keyed_uniforms(np.zeros(2000, dtype=np.uint64), np.arange(2000), 22))
    boxes = crop_boxes(u, side, side, scale)  # (B, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    frac = w * h / side**2
    assert float(frac.min()) >= scale[0] * 0.98 and float(frac.max()) <= scale[1] * 1.02
    assert float(frac.max() - frac.min()) > 0.5 * (scale[1] - scale[0])  # the range is used
    assert bool(((w / h) >= 0.74).all() and ((w / h) <= 1.35).all())  # aspect 3/4 .. 4/3
    assert bool((boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= side).all())


def test_flip_grayscale_and_blur_probabilities():
    flipped = _views(size=12, crop_scale=(1.0, 1.0), **{**OFF, "flip_p": 1.0})
    plain = _views(size=12, crop_scale=(1.0, 1.0), **OFF)
    torch.testing.assert_close(flipped[4][0], plain[4][0].flip(-1))
    grey = _views(size=8, **{**OFF, "grayscale_p": 1.0})[2][0]
    torch.testing.assert_close(grey[0], grey[1])
    torch.testing.assert_close(grey[1], grey[2])
    blurred = _views(size=12, crop_scale=(1.0, 1.0), **{**OFF, "blur_p": 1.0})[4][0]
    assert float(blurred.std()) < float(plain[4][0].std())  # blur smooths the noise image


def test_colour_ops_and_blur_match_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 10, 10, generator=g)
    f = torch.tensor([0.7, 1.2, 1.35]).view(3, 1, 1, 1)
    reference = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for ours, theirs in zip(OPS[:3], reference, strict=True):
        want = torch.stack([theirs(x[i], float(f[i])) for i in range(3)])
        torch.testing.assert_close(ours(x.clone(), f), want, atol=1e-5, rtol=0)
    shift = torch.tensor([0.1, -0.05, 0.0]).view(3, 1, 1, 1)
    want = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(3)])
    torch.testing.assert_close(OPS[3](x.clone(), shift), want, atol=1e-5, rtol=0)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    want = torch.stack(
        [TF.gaussian_blur(x[i], [5, 5], [float(s)] * 2) for i, s in enumerate(sigma)]
    )
    torch.testing.assert_close(_gaussian_blur(x, sigma, 5), want, atol=1e-5, rtol=0)


def test_image_folders_are_refused(tmp_path):
    cfg = DataConfig(dataset="digits", image_size=8, train_limit=64, test_limit=32)
    data = build_datasets(cfg, 0)
    folder = FolderSource([tmp_path / "a.png"], np.zeros(1, dtype=np.int64), ["a"])
    data.train_views.source = folder
    folders = DataConfig(dataset="imagefolder", image_size=8, augment_batched=True)
    with pytest.raises(DataError, match="augment_batched"):
        with_batched_views(data, folders, 0, 1)
    auto = folders.model_copy(update={"augment_batched": "auto"})
    assert with_batched_views(data, auto, 0, 1) is data  # auto: image folders keep PIL


def test_auto_batches_in_memory_images_and_false_keeps_pil():
    base = DataConfig(dataset="digits", image_size=8, train_limit=64, test_limit=32)
    data = build_datasets(base, 0)
    assert with_batched_views(data, base, 0, 1) is data
    auto = DataConfig.model_validate({**base.model_dump(), "augment_batched": "auto"})
    assert isinstance(with_batched_views(data, auto, 0, 1).train_views, BatchedTwoViewDataset)


def test_tiny_run_with_the_batched_path_and_persistent_workers(tmp_path: Path):
    fast = ["data.augment_batched=true"]
    workers = [
        *fast,
        "data.num_workers=1",
        "data.persistent_workers=true",
        "data.prefetch_factor=2",
    ]
    runs = [
        tiny_runs(tmp_path / name, sets=sets)[0] for name, sets in (("a", fast), ("b", workers))
    ]
    outcomes = [train_run(spec, progress=False) for spec in runs]
    assert [o.status for o in outcomes] == ["finished", "finished"]
    a, b = (open_run(o.directory) for o in outcomes)
    # a persistent worker sees every epoch's keys: the same views as without workers
    np.testing.assert_allclose(a["loss"].values, b["loss"].values, rtol=1e-6)
    assert a.sizes["epoch"] == 2 and np.isfinite(a["loss"].values).all()


def test_crop_resize_is_torchvisions_roi_align_with_or_without_deterministic_mode():
    """The op called directly: the same bits as ``torchvision.ops.roi_align`` on a CPU
    (where deterministic mode does not reroute it; on CUDA, tests/test_cuda.py)."""
    from torchvision.ops import roi_align

    from siamlab.data.batched import crop_resize

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 20, 20, generator=g)
    corner = torch.rand(6, 2, generator=g) * 10
    rois = torch.cat([torch.arange(6.0)[:, None], corner, corner + 4 + 6 * torch.rand(6, 1)], 1)
    for size in (8, 32):  # shrinking (several samples per pixel) and enlarging
        want = roi_align(x, rois, size, sampling_ratio=-1, aligned=True)
        assert torch.equal(crop_resize(x, rois, size), want)
    saved = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        want = roi_align(x, rois, 8, sampling_ratio=-1, aligned=True)
        assert torch.equal(crop_resize(x, rois, 8), want)
    finally:
        torch.use_deterministic_algorithms(saved)


def _table_hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The reference: torchvision's six-sector table, (n, 3, 6, S, S), then one gather."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    sector = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    rows = ([v, q, p, p, t, v], [t, v, v, q, p, p], [p, p, t, v, v, q])
    table = torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)  # (n, 3, 6, S, S)
    return table.gather(2, sector[:, None, None].expand(-1, 3, 1, -1, -1))[:, :, 0]


def test_hsv_to_rgb_picks_the_same_values_as_the_six_sector_table():
    g = torch.Generator().manual_seed(1)
    hsv = torch.rand(5, 3, 9, 9, generator=g)
    hsv[0, 0] = torch.linspace(0, 1 - 1e-7, 81).view(9, 9)  # every sector and its edges
    hsv[1, 1] = 0.0  # no saturation: grey
    hsv[2, 0] = (torch.arange(81) % 6).view(9, 9) / 6.0  # exactly on the sector borders
    assert torch.equal(hsv_to_rgb(hsv), _table_hsv_to_rgb(hsv))
    x = torch.rand(4, 3, 7, 7, generator=g)
    assert torch.equal(hsv_to_rgb(rgb_to_hsv(x)), _table_hsv_to_rgb(rgb_to_hsv(x)))
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-6, rtol=0)


def test_jitter_applies_each_images_ops_in_its_own_order():
    """The batched jitter against its definition, one image at a time: for image b with
    u[b, 0] < p, each op with a non-zero strength, in the argsort order of u[b, 5:9]."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(40, 3, 6, 6, generator=g)
    u = torch.rand(40, 9, generator=g, dtype=torch.float64)
    for strength in ((0.4, 0.4, 0.4, 0.1), (0.8, 0.0, 0.3, 0.0)):
        lo = torch.tensor([max(0.0, 1 - s) for s in strength[:3]] + [-strength[3]], dtype=u.dtype)
        hi = torch.tensor([1 + s for s in strength[:3]] + [strength[3]], dtype=u.dtype)
        want = x.clone()
        for b in range(40):
            if u[b, 0] >= 0.8:
                continue
            for op in torch.argsort(u[b, 5:9]).tolist():
                if strength[op] > 0:
                    f = (lo[op] + (hi[op] - lo[op]) * u[b, 1 + op]).float().view(1, 1, 1, 1)
                    want[b : b + 1] = OPS[op](want[b : b + 1], f)
        assert torch.equal(jitter(x, u, strength, 0.8), want)


def test_both_views_in_one_call_equal_one_call_per_view():
    views = _views(size=8)
    views.epoch = 3
    ks = [7, 0, 23, 5, 5, 11]
    v1, v2, _, i = views.batch(ks)
    images = views.images[i]
    for view, got in ((0, v1), (1, v2)):
        alone = views.augment(images, views.uniforms(i.numpy(), np.zeros(6, np.int64), view))
        assert torch.equal(got, alone)


def test_the_views_are_the_same_under_the_training_forwards_autocast():
    """The eta cache pass makes views under bf16 autocast: no op of theirs may follow it."""
    views = _views(size=8, jitter_p=1.0, grayscale_p=0.5, blur_p=1.0, flip_p=0.5)
    ks = list(range(12))
    plain = views.batch(ks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = views.batch(ks)
    assert all(torch.equal(a, b) for a, b in zip(plain, under, strict=True))
