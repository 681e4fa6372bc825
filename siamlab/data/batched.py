"""The fast path for in-memory uint8 datasets: the paper's augmentation on whole batches.

:class:`BatchedAugment` applies the same recipe as :func:`siamlab.data.transforms.train_transform`
(RandomResizedCrop, ColorJitter with p, RandomGrayscale, GaussianBlur with p, horizontal
flip, normalisation) to a batch of uint8 images (B, H, W, 3) at once with tensor ops:
crops are per-sample boxes resampled by ``roi_align`` (bilinear, averaging several
samples per output pixel when shrinking), jitter factors, blur kernels and flips are
per-sample tensors. No PIL image is made.

Randomness is keyed, as in :mod:`siamlab.data.views`: every parameter of a view comes
from a counter-based hash of (seed, epoch, image, pair, view), never from a stream, so a
view does not depend on the batch it is in, on workers or on processes. The draws differ
from the PIL path's (other generator, float instead of uint8 arithmetic), which is why the
path is opt-in (``data.augment_batched``).

The parameters (boxes, factors, which images an op touches) are computed on the host;
the pixels are processed wherever the images are, so the same code runs on uint8 images
kept on the training GPU (``data.device_resident``, :mod:`siamlab.data.resident`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.ops  # noqa: F401  (registers torch.ops.torchvision)

from siamlab.data.colour import grey, jitter, rows_of
from siamlab.data.config import AugmentConfig, DataConfig
from siamlab.data.sources import ArraySource
from siamlab.data.transforms import blur_kernel_size
from siamlab.data.views import TwoViewDataset, mix_seed
from siamlab.errors import DataError

if TYPE_CHECKING:
    from siamlab.data.build import DataBundle

N_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes, then falls back to the centre
RATIO = (3 / 4, 4 / 3)  # crop aspect ratio range (torchvision's default)
# Uniforms per view, by column: crop (area and log-ratio per try, then the position),
# jitter (apply, 4 factors, 4 keys of the random op order), grayscale, blur (apply, sigma), flip.
U_CROP = 0
U_JIT = U_CROP + 2 * N_ATTEMPTS + 2
U_GRAY = U_JIT + 9
U_BLUR = U_GRAY + 1
U_FLIP = U_BLUR + 2
N_UNIFORMS = U_FLIP + 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 ``x`` (elementwise; wraps modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def keyed_uniforms(bases: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Uniforms in [0, 1) that depend only on (base, index, column).

    Args:
        bases: uint64 (B,), one base key per sample (seed, epoch, pair, view mixed).
        index: int (B,), the image indices.
        n: uniforms per sample.

    Returns:
        float64 (B, n).
    """
    with np.errstate(over="ignore"):
        key = _splitmix(bases.astype(np.uint64) ^ _splitmix(index.astype(np.uint64)))  # (B,)
        cols = np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN  # (n,)
        bits = _splitmix(key[:, None] ^ cols[None, :])  # (B, n)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def crop_boxes(
    u: torch.Tensor, height: int, width: int, scale: tuple[float, float]
) -> torch.Tensor:
    """RandomResizedCrop's boxes (torchvision's rule: first of 10 valid tries, else centre).

    Args:
        u: uniforms (B, 2 * N_ATTEMPTS + 2): area and log-ratio per try, then position.
        height: image height H.
        width: image width W.
        scale: (min, max) fraction of the area.

    Returns:
        float (B, 4) boxes (x1, y1, x2, y2) in pixel-edge coordinates.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, :N_ATTEMPTS])  # (B, 10)
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(lo + (hi - lo) * u[:, N_ATTEMPTS : 2 * N_ATTEMPTS])  # (B, 10)
    w = torch.round(torch.sqrt(target * aspect))  # (B, 10)
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, 10)
    first = ok.int().argmax(dim=1, keepdim=True)  # (B, 1): first valid try
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]  # (B,)
    in_ratio = width / height  # fallback: the largest centred box within RATIO
    cw = width if in_ratio <= RATIO[1] else round(height * RATIO[1])
    ch = height if in_ratio >= RATIO[0] else round(width / RATIO[0])
    found = ok.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, float(cw)))
    h = torch.where(found, h, torch.full_like(h, float(ch)))
    pos = u[:, 2 * N_ATTEMPTS : 2 * N_ATTEMPTS + 2]  # (B, 2)
    top = torch.where(found, torch.floor(pos[:, 0] * (height - h + 1)), (height - h) // 2)
    left = torch.where(found, torch.floor(pos[:, 1] * (width - w + 1)), (width - w) // 2)
    return torch.stack([left, top, left + w, top + h], dim=1)  # (B, 4)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Separable Gaussian blur of (n, 3, S, S) with per-sample ``sigma`` (n,), reflect padding.

    On a GPU the convolutions run in float64: cuDNN may round float32 ones to TF32 (a
    10-bit mantissa), and the views should match the host's up to float32 rounding. They
    run outside autocast: the eta cache pass makes its views under the training forward's
    bf16 autocast, which would round a CPU's float32 convolutions to bf16 (and its targets
    would then be of other views than training's; tests/test_eta.py).
    """
    n, c, hgt, wid = x.shape
    dtype = x.dtype if x.device.type == "cpu" else torch.float64
    grid = torch.arange(k, dtype=dtype, device=x.device) - (k - 1) / 2  # (k,)
    kern = torch.exp(-0.5 * (grid[None, :] / sigma[:, None].to(dtype)) ** 2)  # (n, k)
    kern = (kern / kern.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n * c, k)
    y = F.pad(x.to(dtype).reshape(1, n * c, hgt, wid), (k // 2,) * 4, mode="reflect")
    with torch.autocast(x.device.type, enabled=False):
        y = F.conv2d(y, kern[:, None, :, None], groups=n * c)  # vertical
        y = F.conv2d(y, kern[:, None, None, :], groups=n * c)  # horizontal
    return y.reshape(n, c, hgt, wid).to(x.dtype)


def crop_resize(x: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """Each box of ``x`` resized by torchvision's ``roi_align`` (bilinear, adaptive, aligned).

    The op itself, not ``torchvision.ops.roi_align``: under deterministic algorithms
    (``train.deterministic``) that routes CUDA inputs to a pure-Python version it compiles
    with ``torch.compile`` on first use (for a backward without atomics). The views need no
    backward, and the op's forward computes each output pixel in one thread, so it is
    deterministic as it is; on a CPU both are the same op.

    Args:
        x: images (B, C, H, W).
        rois: (B, 5) rows ``(image index, x1, y1, x2, y2)`` in pixels, on ``x``'s device.
        size: the output side S.

    Returns:
        The crops resized to (B, C, S, S).
    """
    return torch.ops.torchvision.roi_align(x, rois, 1.0, size, size, -1, True)


class BatchedAugment:
    """The two-view augmentation of a whole batch (see the module docstring).

    Args:
        aug: the recipe (strengths, probabilities, normalisation; mean/std resolved).
        size: side S of the output views.
        device: where the images are (and the views are made).
    """

    def __init__(self, aug: AugmentConfig, size: int, device: torch.device | None = None) -> None:
        if aug.mean is None or aug.std is None:
            raise ValueError("resolve mean/std first (siamlab.data.build.resolved_augment)")
        self.aug, self.size = aug, size
        self.device = device or torch.device("cpu")
        self.mean = torch.tensor(aug.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(aug.std, device=self.device).view(1, 3, 1, 1)
        self.kernel = blur_kernel_size(size)

    def __call__(self, images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Augment uint8 images (B, H, W, 3) with uniforms (B, N_UNIFORMS) -> float (B, 3, S, S).

        The views are made on the images' device (``self.device``); ``u`` stays on the host.
        """
        aug, b, dev = self.aug, images.shape[0], images.device
        x = images.permute(0, 3, 1, 2).float().div_(255)  # (B, 3, H, W) in [0, 1]
        boxes = crop_boxes(u[:, U_CROP:U_JIT], x.shape[2], x.shape[3], aug.crop_scale)
        rois = torch.cat([torch.arange(b)[:, None], boxes], dim=1).to(x.dtype)  # (B, 5)
        x = crop_resize(x, rois.to(dev), self.size)  # (B, 3, S, S)
        x = x.clamp_(0, 1)
        x = jitter(x, u[:, U_JIT:U_GRAY], aug.jitter, aug.jitter_p)
        gray = rows_of(u[:, U_GRAY] < aug.grayscale_p, dev)  # (n,) or None
        if gray is not None:
            x.index_copy_(0, gray, grey(x.index_select(0, gray)).expand(-1, 3, -1, -1))
        blur = u[:, U_BLUR] < aug.blur_p  # (B,) on the host
        rows = rows_of(blur, dev)
        if rows is not None:
            lo, hi = aug.blur_sigma
            sigma = (lo + (hi - lo) * u[blur, U_BLUR + 1]).to(x.dtype)  # (n,)
            x.index_copy_(
                0, rows, _gaussian_blur(x.index_select(0, rows), sigma.to(dev), self.kernel)
            )
        flip = (u[:, U_FLIP] < aug.flip_p)[:, None, None, None]  # (B, 1, 1, 1)
        x = torch.where(flip.to(dev), x.flip(-1), x)
        return ((x - self.mean) / self.std).contiguous()  # (B, 3, S, S)


class BatchedTwoViewDataset(TwoViewDataset):
    """:class:`TwoViewDataset` whose ``__getitems__`` augments a whole batch at once.

    DataLoader calls ``__getitems__`` with a batch sampler's indices, so a batch costs a
    few tensor ops instead of 2B PIL pipelines. Items are ``(view1, view2, label, i)``
    like the PIL path's (flat index ``k = i * pairs + r``), so every consumer (the
    loader, the eta cache pass) works unchanged. :meth:`batch` gives the same batch
    already collated; :meth:`on_device` a copy whose images live on the training device
    and whose batches are made there (``resident``: no DataLoader in the loop).
    """

    resident = False  # True: the training process makes the batches (siamlab.data.resident)

    def __init__(
        self, source: ArraySource, aug: AugmentConfig, size: int, seed: int, pairs: int = 1
    ) -> None:
        super().__init__(source, _no_pil, seed, pairs)
        self.images = torch.from_numpy(source.x)  # (N, H, W, 3) uint8, shared, not copied
        self.labels = source.targets
        self.augment = BatchedAugment(aug, size)

    def on_device(self, device: torch.device, resident: bool = True) -> BatchedTwoViewDataset:
        """A copy with the uint8 images on ``device`` (one copy) and the views made there.

        ``resident`` marks it for :mod:`siamlab.data.resident` (batches made by the
        training process); False gives a dataset for a DataLoader again (host images).
        """
        views = copy.copy(self)
        views.images = self.images.to(device)  # (N, H, W, 3) uint8
        views.augment = BatchedAugment(self.augment.aug, self.augment.size, device)
        views.resident = resident
        return views

    def uniforms(self, i: np.ndarray, pair: np.ndarray, view: int) -> torch.Tensor:
        """The keyed uniforms (B, N_UNIFORMS) of one view of images ``i`` (pairs ``pair``)."""
        keys = {
            r: mix_seed("batched-views", self.seed, self.epoch, r, view) for r in set(pair.tolist())
        }
        bases = np.array([keys[r] for r in pair.tolist()], dtype=np.uint64)  # (B,)
        return torch.from_numpy(keyed_uniforms(bases, i, N_UNIFORMS))

    def batch(self, ks: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch at flat indices ``ks``, collated as a DataLoader would.

        Returns:
            view1, view2 (B, 3, S, S) on the images' device; labels and image indices
            (B,) int64 on the host (the step and the eta sources index host tables).
        """
        i, pair = np.divmod(np.asarray(ks, dtype=np.int64), self.pairs)  # (B,), (B,)
        both = torch.from_numpy(np.concatenate([i, i])).to(self.images.device)  # (2B,)
        u = torch.cat([self.uniforms(i, pair, 0), self.uniforms(i, pair, 1)])  # (2B, N)
        # both views in one call: each image's ops are its own, so the same values as two
        # calls, at half the per-op overhead (the ops are small: 2 x 128 16 px images)
        v1, v2 = self.augment(self.images[both], u).chunk(2)  # (B, 3, S, S) each
        labels = torch.as_tensor(np.asarray(self.labels)[i], dtype=torch.int64)  # (B,)
        return v1, v2, labels, torch.from_numpy(i)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """One item, computed as a batch of one (the same values as inside any batch)."""
        return self.__getitems__([k])[0]

    def __getitems__(self, ks: list[int]) -> list[tuple[torch.Tensor, torch.Tensor, int, int]]:
        """The items at flat indices ``ks``: both views of each, augmented as one batch."""
        v1, v2, labels, i = self.batch(ks)
        return [(v1[b], v2[b], int(labels[b]), int(n)) for b, n in enumerate(i.tolist())]


def _no_pil(_: object) -> torch.Tensor:
    raise TypeError("BatchedTwoViewDataset augments tensors; it has no per-image PIL transform")


def with_batched_views(data: DataBundle, cfg: DataConfig, seed: int, pairs: int) -> DataBundle:
    """Return ``data`` with its training views made as ``cfg.augment_batched`` says.

    ``False`` keeps the PIL path; ``True`` uses :class:`BatchedTwoViewDataset`; ``"auto"``
    uses it when the images are an in-memory uint8 array and keeps the PIL path otherwise.

    Raises:
        DataError: ``True`` but the training images are read from files (image folders).
    """
    from siamlab.data.build import resolved_augment

    source = data.train_views.source
    in_memory = isinstance(source, ArraySource)
    if cfg.augment_batched is False or (cfg.augment_batched == "auto" and not in_memory):
        return data
    if not isinstance(source, ArraySource):
        raise DataError(
            f"data.augment_batched needs an in-memory dataset (digits, npz, cifar10/100); "
            f"{cfg.dataset.kind!r} reads image files: set data.augment_batched=false."
        )
    views = BatchedTwoViewDataset(source, resolved_augment(cfg), cfg.image_size, seed, pairs)
    return dataclasses.replace(data, train_views=views)
