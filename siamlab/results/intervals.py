"""95% intervals over seeds: a metric's mean, and the difference of two variants' means.

The mean over ``n`` seeds gets a Student t interval for ``2 <= n < 5`` and a
studentized bootstrap (bootstrap-t) interval for ``n >= 5``; one seed has no interval.
The difference between two variants is Welch's unpaired t interval. Why these and
how well they cover: docs/seed-statistics.md.

* Student t: ``mean ± t_{n-1, 0.975} s / sqrt(n)`` (s: sample std, ddof 1), exact for
  normal seeds.
* bootstrap-t (Efron & Tibshirani 1993, Ch. 12, "the bootstrap-t interval"): resample
  the seeds with replacement, take ``t* = (mean* - mean) / (s* / sqrt(n))``, and the
  interval ``[mean - q*_{0.975} s/sqrt(n), mean - q*_{0.025} s/sqrt(n)]``. The plain
  percentile bootstrap covers only ~85% at n = 5 (docs/seed-statistics.md); the
  bootstrap-t keeps ~95% and follows skewed seeds. The generator is fixed
  (:data:`BOOTSTRAP_SEED`), so the same values give the same interval every time.
* Welch (Welch 1947): ``d ± t_{nu, 0.975} sqrt(s_a^2/n_a + s_b^2/n_b)``, nu by
  Welch-Satterthwaite. Unpaired: seed k of one variant is not matched with seed k of
  the other (safe whether or not runs of the same seed are correlated).

Everything here is plain numpy/scipy on arrays of values; NaN means "no value".
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_FROM = 5  # seeds from which the bootstrap-t replaces Student t
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
STUDENT_T, BOOTSTRAP_T, WELCH = "Student t", "bootstrap-t", "Welch t"
ONE_SEED = "1 seed"  # the method of a mean without an interval
CHUNK = 2_000_000  # resampled statistics held at once (rows x resamples)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its interval (NaN bounds for fewer than two seeds)."""

    mean: float
    lo: float
    hi: float
    n: int
    method: str  # STUDENT_T, BOOTSTRAP_T, ONE_SEED, or "" without values


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` and its Welch interval; ``n``, ``n_ref``: seeds of a and b."""

    diff: float
    lo: float
    hi: float
    n: int
    n_ref: int
    method: str  # WELCH, or "" when either side has fewer than two seeds

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or below 0 (a difference at the level)."""
        return bool(self.lo > 0 or self.hi < 0)


def _student(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Student t bounds of each row's mean: x (r, n) without NaN, n >= 2."""
    n = x.shape[1]
    mean, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(n)  # (r,)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    return mean - half, mean + half


def _bootstrap_t(x: np.ndarray, level: float, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """bootstrap-t bounds of each row's mean (x (r, n), n >= 2); NaN/inf where ties break it.

    A resample is the count of each seed in it (a multinomial draw), so its mean and
    variance are matrix products of the centred values with the counts.
    """
    r, n = x.shape
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples).T / n  # (n, B) weights
    mean, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(n)  # (r,)
    q = np.empty((r, 2))
    step = max(1, CHUNK // resamples)
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, r, step):
            c = x[start : start + step] - mean[start : start + step, None]  # (c, n) centred
            m_star = c @ counts  # (c, B): mean* - mean
            var_star = ((c**2) @ counts - m_star**2) * n / (n - 1)  # (c, B)
            tied = var_star <= 1e-10 * (se[start : start + step, None] ** 2 * n)  # rounding
            var_star[tied] = 0.0
            t_star = m_star / np.sqrt(var_star / n)  # +-inf: a resample of tied values
            t_star = np.nan_to_num(t_star, nan=0.0, posinf=np.inf, neginf=-np.inf)
            levels = [(1 - level) / 2, (1 + level) / 2]
            q[start : start + step] = np.quantile(t_star, levels, axis=1).T
    return mean - q[:, 1] * se, mean - q[:, 0] * se


def _bounds(
    x: np.ndarray, level: float, resamples: int, bootstrap_from: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Bounds of each row of x (r, n) without NaN, and the method (by n)."""
    if x.shape[1] < bootstrap_from:
        return (*_student(x, level), STUDENT_T)
    lo, hi = _bootstrap_t(x, level, resamples)
    return lo, hi, BOOTSTRAP_T


def mean_intervals(
    values: np.ndarray,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    bootstrap_from: float = BOOTSTRAP_FROM,
) -> list[Interval]:
    """The interval of each row's mean over its non-NaN values (the seeds of one point).

    Args:
        values: (rows, seeds); NaN where a seed has no value. Rows with the same seeds
            present are computed together (one curve: a row per step or epoch).
        level: the coverage, 0.95 by default.
        resamples: bootstrap resamples (n >= 5).
        bootstrap_from: the seeds from which the bootstrap-t is used (``math.inf``:
            Student t throughout).

    Returns:
        One :class:`Interval` per row. Where the bootstrap-t has no finite bound (ties,
        e.g. four equal seeds and one other), that row falls back to Student t.
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))  # (rows, seeds)
    valid = ~np.isnan(values)
    rows = len(values)
    lo, hi = np.full(rows, math.nan), np.full(rows, math.nan)
    method = [ONE_SEED if k == 1 else "" for k in valid.sum(1)]
    for pattern in np.unique(valid, axis=0):
        if pattern.sum() < 2:
            continue
        picked = np.flatnonzero((valid == pattern).all(1))
        x = values[picked][:, pattern]  # (r, n)
        low, high, name = _bounds(x, level, resamples, bootstrap_from)
        bad = ~(np.isfinite(low) & np.isfinite(high))
        if bad.any():
            low[bad], high[bad] = _student(x[bad], level)
        lo[picked], hi[picked] = low, high
        for i, b in zip(picked, bad, strict=True):
            method[i] = STUDENT_T if b else name
    with np.errstate(invalid="ignore"):
        n = valid.sum(1)
        means = np.where(n > 0, np.nansum(values, 1) / np.maximum(n, 1), math.nan)
    return [
        Interval(float(means[i]), float(lo[i]), float(hi[i]), int(n[i]), method[i])
        for i in range(rows)
    ]


def mean_interval(values: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES) -> Interval:
    """The interval of the mean of ``values`` (1-D, NaN dropped); see :func:`mean_intervals`."""
    return mean_intervals(np.ravel(np.asarray(values, dtype=float))[None], level, resamples)[0]


def difference_interval(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Difference:
    """Welch's interval of ``mean(a) - mean(b)`` (NaN dropped); unpaired.

    Without two values on each side the difference has no interval (NaN bounds,
    method ""). When both sides have zero spread the interval is the difference itself.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    na, nb = len(a), len(b)
    diff = float(a.mean() - b.mean()) if na and nb else math.nan
    if na < 2 or nb < 2:
        return Difference(diff, math.nan, math.nan, na, nb, "")
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb  # squared standard errors
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, na, nb, WELCH)
    nu = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.5 + level / 2, nu)) * se
    return Difference(diff, diff - half, diff + half, na, nb, WELCH)


def methods_text(intervals: list[Interval]) -> str:
    """Which interval the seeds got, e.g. ``Student t, n=3`` or ``Student t, n=3; 1 seed``."""
    by_method: dict[str, set[int]] = {}
    for iv in intervals:
        if iv.method:
            by_method.setdefault(iv.method, set()).add(iv.n)
    parts = []
    for name in (STUDENT_T, BOOTSTRAP_T, ONE_SEED):
        if ns := sorted(by_method.get(name, ())):
            if name == ONE_SEED:
                parts.append("1 seed: no interval")
                continue
            span = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"
            parts.append(f"{name}, {span}")
    return "; ".join(parts) or "no values"
