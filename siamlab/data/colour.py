"""ColorJitter on a batch of float images, with per-sample factors and a per-sample op order.

The same operations as torchvision's ``ColorJitter`` on tensors (brightness, contrast,
saturation blend with black, the mean grey and the greyscale image; hue rotates H in HSV),
applied in a random order per image, each factor drawn uniformly from
[max(0, 1 - s), 1 + s] (hue: [-s, s]). Used by :mod:`siamlab.data.batched`.

The uniforms live on the host and the pixels on any device: which images an op touches
is decided on the host and sent as index tensors, so a GPU batch needs no host sync.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images (n, 3, S, S) -> (n, 1, S, S)."""
    luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * luma).sum(1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (f * x + (1 - f) * other).clamp_(0, 1)


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f).clamp_(0, 1)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True), f)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, grey(x), f)


def _hsv_planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB (n, 3, S, S) in [0, 1] -> H, S, V planes (n, S, S) each (torchvision's formulas)."""
    r, g, b = x.unbind(1)  # (n, S, S) each
    maxc, minc = x.amax(1), x.amin(1)
    flat = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(flat, ones, maxc)
    div = torch.where(flat, ones, chroma)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB (n, 3, S, S) in [0, 1] -> HSV (n, 3, S, S), H in [0, 1) (torchvision's formulas)."""
    return torch.stack(_hsv_planes(x), dim=1)


# Which of (v, q, p, t) each RGB channel takes in each of the six hue sectors (rows):
# torchvision's table, R = (v, q, p, p, t, v), G = (t, v, v, q, p, p), B = (p, p, t, v, v, q).
_SECTOR_SOURCES = ((0, 3, 2), (1, 0, 2), (2, 0, 3), (2, 1, 0), (3, 2, 0), (0, 2, 1))


def _rgb_planes(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H, S, V planes (n, S, S) -> RGB (n, 3, S, S) (torchvision's formulas).

    Each output value is one of v, q, p, t, picked per pixel by its hue sector: one gather
    from the four, stacked last (n, S, S, 4), instead of torchvision's (n, 3, 6, S, S)
    table; the same values.
    """
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    sector = i.to(torch.int64) % 6  # (n, S, S)
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    sources = torch.tensor(_SECTOR_SOURCES, device=h.device)  # (6, 3)
    index = sources.index_select(0, sector.view(-1)).view(*sector.shape, 3)  # (n, S, S, 3)
    rgb = torch.stack([v, q, p, t], dim=-1).gather(-1, index)  # (n, S, S, 3)
    return rgb.permute(0, 3, 1, 2)  # (n, 3, S, S), channels-last strides


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (n, 3, S, S) -> RGB (n, 3, S, S) (torchvision's formulas)."""
    return _rgb_planes(*x.unbind(1))


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    h, s, v = _hsv_planes(x)
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)  # shift: (n, 1, 1, 1)
    return _rgb_planes(h, s, v)


OPS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    _brightness,
    _contrast,
    _saturation,
    _hue,
)


def rows_of(mask: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """The indices (n,) of the True entries of a host ``mask`` (B,), on ``device``; None if none."""
    rows = torch.nonzero(mask)[:, 0]
    return rows.to(device) if rows.numel() else None


def jitter(
    x: torch.Tensor, u: torch.Tensor, strength: tuple[float, float, float, float], p: float
) -> torch.Tensor:
    """Apply ColorJitter with probability ``p`` per image.

    Which images each op touches in each of the four slots is decided on the host (numpy:
    a few microseconds each, where torch ops on tiny tensors cost several times that); the
    images are gathered, changed and written back by index on their device.

    Args:
        x: images (B, 3, S, S) in [0, 1], on any device.
        u: host uniforms (B, 9): apply, the four factors, four keys whose argsort is the
            order.
        strength: (brightness, contrast, saturation, hue).
        p: probability of jittering an image.

    Returns:
        The jittered images (B, 3, S, S) (a new tensor).
    """
    x = x.clone()
    on = (u[:, 0] < p).numpy()  # (B,)
    lo = torch.tensor([max(0.0, 1 - s) for s in strength[:3]] + [-strength[3]], dtype=u.dtype)
    hi = torch.tensor([1 + s for s in strength[:3]] + [strength[3]], dtype=u.dtype)
    factors = (lo + (hi - lo) * u[:, 1:5]).to(x.dtype).numpy()  # (B, 4)
    order = torch.argsort(u[:, 5:9], dim=1).numpy()  # (B, 4): op index per slot
    active = [s > 0 for s in strength]  # torchvision skips an op of strength 0
    for slot in range(4):
        for op, fn in enumerate(OPS):
            if not active[op]:
                continue
            chosen = np.flatnonzero(on & (order[:, slot] == op))  # (n,) on the host
            if chosen.size:
                f = torch.from_numpy(factors[chosen, op]).view(-1, 1, 1, 1).to(x.device)
                rows = torch.from_numpy(chosen).to(x.device)  # (n,)
                x.index_copy_(0, rows, fn(x.index_select(0, rows), f))
    return x
