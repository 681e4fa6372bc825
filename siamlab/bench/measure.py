"""Timing primitives of ``siamlab bench``: interleaved blocks, FLOP counts, matmul peak.

Machines are shared and clocks drift, so loops that are compared run in the same process
in alternating blocks (:func:`interleave`), the order rotated every round; each arm's
rate is its images over its own seconds, and the spread of its block rates shows the noise.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA) so wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Arm:
    """One loop being timed.

    Attributes:
        name: label in the report.
        run_block: runs ``n`` training steps.
        batch: images per step.
        flops: FLOPs of one step's forward and backward (counted once).
        seconds: time spent in timed blocks.
        images: images trained in timed blocks.
        block_rates: img/s of every timed block.
        diag_seconds: of ``seconds``, the time spent in step diagnostics (siamlab's
            arms add to it; reset after the warm-up).
        diag_parts: ``diag_seconds`` split by step hook and sink (reset with it).
    """

    name: str
    run_block: Callable[[int], None]
    batch: int
    flops: float = 0.0
    seconds: float = 0.0
    images: int = 0
    block_rates: list[float] = field(default_factory=list)
    diag_seconds: float = 0.0
    diag_parts: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Images per second over all timed blocks."""
        return self.images / self.seconds if self.seconds else float("nan")

    @property
    def diag_share(self) -> float:
        """Share of the timed seconds spent in step diagnostics (0 for the reference)."""
        return self.diag_seconds / self.seconds if self.seconds else float("nan")

    @property
    def flop_rate(self) -> float:
        """Model FLOP/s: FLOPs per step x steps per second."""
        return self.flops * self.rate / self.batch


def interleave(
    arms: Sequence[Arm], steps: int, block: int, device: torch.device, warmup: int = 1
) -> None:
    """Time ``steps`` steps of every arm in alternating blocks of ``block`` steps.

    Each arm first runs ``warmup`` untimed steps (allocations, kernel selection, compile).
    Round r runs the arms in an order rotated by r, so no arm always follows the same one.
    """
    for arm in arms:
        if warmup:
            arm.run_block(warmup)
        arm.diag_seconds = 0.0
        arm.diag_parts.clear()
    synchronize(device)
    done, r = 0, 0
    while done < steps:
        n = min(block, steps - done)
        k = r % len(arms)
        for arm in [*arms[k:], *arms[:k]]:
            synchronize(device)
            t0 = time.perf_counter()
            arm.run_block(n)
            synchronize(device)
            dt = time.perf_counter() - t0
            arm.seconds += dt
            arm.images += n * arm.batch
            arm.block_rates.append(n * arm.batch / dt)
        done, r = done + n, r + 1


@dataclass(frozen=True)
class PairedRatio:
    """Arm a's speed over arm b's, round by round (each round runs a block of every arm).

    Attributes:
        median: median over rounds of (a's block img/s) / (b's block img/s).
        low: lower end of the distribution-free interval for that median.
        high: upper end.
        level: the interval's coverage (below 0.95 when there are too few rounds for it).
        rounds: rounds compared.
    """

    median: float
    low: float
    high: float
    level: float
    rounds: int


def paired_ratio(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedRatio:
    """The median of the per-round ratios ``a[i] / b[i]`` and an interval for it.

    A ratio of blocks run in the same round cancels most of a shared machine's drift,
    which the ratio of the arms' total rates keeps. The interval is the order-statistic
    one for a median (Conover, "Practical Nonparametric Statistics", 3rd ed., Sec. 3.2):
    [r_(k), r_(n+1-k)] of the sorted ratios, with the largest k whose coverage
    ``1 - 2 P(Binomial(n, 1/2) < k)`` is at least ``level``; with too few rounds for that
    it is [min, max] and ``level`` says what it covers.

    Args:
        a: arm a's block rates, one per round.
        b: arm b's, in the same rounds.
        level: the coverage wanted.

    Raises:
        ValueError: the arms ran different numbers of rounds, or none.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired rounds need equal, non-zero counts ({len(a)} vs {len(b)})")
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    n = len(ratios)

    def coverage(k: int) -> float:  # of [r_(k), r_(n+1-k)], 1-based k
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= level:
        k += 1
    return PairedRatio(statistics.median(ratios), ratios[k - 1], ratios[n - k], coverage(k), n)


def step_flops(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    x1: torch.Tensor,
    x2: torch.Tensor,
) -> float:
    """FLOPs of one forward and backward pass (matmuls and convolutions), on a copy of ``model``.

    Args:
        model: the network (left untouched: a deep copy runs).
        loss_fn: ``loss_fn(model, x1, x2)`` -> scalar loss.
        x1: first views (B, 3, H, W), on the model's device.
        x2: second views (B, 3, H, W).
    """
    twin = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        loss_fn(twin, x1, x2).backward()
    return float(counter.get_total_flops())


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5
) -> float:
    """This machine's measured matmul rate in FLOP/s: best of ``reps`` (n x n) @ (n x n).

    The best repetition is kept (the least disturbed by other work on a shared machine).
    Returns NaN when the dtype's matmul fails on ``device``.
    """
    try:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        torch.mm(a, b)  # warm-up: library init, kernel choice
        best = float("inf")
        for _ in range(reps):
            synchronize(device)
            t0 = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            best = min(best, time.perf_counter() - t0)
    except RuntimeError:
        return float("nan")
    return 2.0 * n**3 / best
