"""95% intervals over seeds: coverage on normal seeds, closed forms, ties, Welch's difference."""

import math

import numpy as np
import pytest
from scipy import stats

from siamlab.results.intervals import (
    BOOTSTRAP_T,
    ONE_SEED,
    STUDENT_T,
    WELCH,
    Interval,
    difference_interval,
    mean_interval,
    mean_intervals,
    methods_text,
)

DRAWS = 2000  # coverage of 0.95 over 2000 draws: binomial sd 0.005


@pytest.mark.parametrize(("n", "method"), [(2, STUDENT_T), (3, STUDENT_T), (5, BOOTSTRAP_T)])
def test_coverage_on_normal_seeds(n, method):
    """The interval holds the true mean in ~95% of draws of n normal seeds."""
    mu, sigma = 0.7, 0.05
    seeds = np.random.default_rng(1234 + n).normal(mu, sigma, size=(DRAWS, n))  # (draws, n)
    intervals = mean_intervals(seeds)
    assert {iv.method for iv in intervals} == {method}
    coverage = np.mean([iv.lo <= mu <= iv.hi for iv in intervals])
    assert coverage == pytest.approx(0.95, abs=0.02), coverage


def test_bootstrap_t_covers_where_the_percentile_bootstrap_does_not():
    """At n = 5 the plain percentile bootstrap covers ~85%: the reason for the bootstrap-t."""
    seeds = np.random.default_rng(7).normal(size=(DRAWS, 5))
    iv = mean_intervals(seeds)
    boot = np.random.default_rng(0).integers(0, 5, (2000, 5))  # (B, n)
    means = seeds[:, boot].mean(-1)  # (draws, B)
    lo, hi = np.quantile(means, [0.025, 0.975], axis=1)
    percentile = np.mean((lo <= 0) & (hi >= 0))
    assert percentile < 0.9 < np.mean([i.lo <= 0 <= i.hi for i in iv])


def test_student_t_closed_form():
    """[1, 2, 3]: mean 2, s = 1, so 2 ± t(0.975, 2) / sqrt(3) = 2 ± 4.3027 / 1.7321."""
    iv = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert (iv.mean, iv.n, iv.method) == (2.0, 3, STUDENT_T)
    assert (iv.lo, iv.hi) == (pytest.approx(2 - half), pytest.approx(2 + half))
    iv = mean_interval([0.5, 1.5, np.nan, 1.0], level=0.9)  # NaN = a seed without a value
    half = stats.t.ppf(0.95, 2) * 0.5 / math.sqrt(3)
    assert (iv.n, iv.lo, iv.hi) == (3, pytest.approx(1 - half), pytest.approx(1 + half))


def test_bootstrap_t_is_deterministic_and_equivariant():
    """Fixed generator: same seeds, same interval; a + b x maps the interval to a + b [lo, hi]."""
    x = np.array([0.61, 0.58, 0.66, 0.60, 0.63, 0.59])
    iv, again = mean_interval(x), mean_interval(x.copy())
    assert iv == again and iv.method == BOOTSTRAP_T
    moved = mean_interval(3.0 + 20.0 * x)
    assert (moved.lo, moved.hi) == (pytest.approx(3 + 20 * iv.lo), pytest.approx(3 + 20 * iv.hi))
    assert iv.lo < iv.mean < iv.hi
    flipped = mean_interval(-x)  # t* mirrors: the interval of -x is minus that of x
    assert (flipped.lo, flipped.hi) == (pytest.approx(-iv.hi), pytest.approx(-iv.lo))


def test_one_seed_no_seed_equal_seeds_and_ties():
    one = mean_interval([0.4])
    assert (one.mean, one.n, one.method) == (0.4, 1, ONE_SEED)
    assert math.isnan(one.lo) and math.isnan(one.hi)
    none = mean_interval([np.nan, np.nan])
    assert none.n == 0 and math.isnan(none.mean) and none.method == ""
    same = mean_interval([0.1] * 6)  # no spread: the interval is the value
    assert (same.lo, same.hi) == (pytest.approx(0.1), pytest.approx(0.1))
    # four tied seeds: a third of the resamples have no spread, the bootstrap-t no bound
    # (falls back to Student t: mean 0.18, s^2 = 0.032)
    tied = mean_interval([0.1, 0.1, 0.1, 0.1, 0.5])
    half = stats.t.ppf(0.975, 4) * math.sqrt(0.032 / 5)
    assert tied.method == STUDENT_T
    assert (tied.lo, tied.hi) == (pytest.approx(0.18 - half), pytest.approx(0.18 + half))


def test_rows_with_missing_seeds_match_one_at_a_time():
    """A curve's rows (step x seed) with runs of different lengths: per row, its seeds."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 6))  # (steps, seeds)
    values[25:, 5] = np.nan  # a run still going: 5 seeds from step 25
    values[35:, 1:] = np.nan  # one seed from step 35
    rows = mean_intervals(values)
    assert [rows[i].n for i in (0, 25, 35)] == [6, 5, 1]
    for i in (0, 24, 25, 34, 35, 39):
        one = mean_interval(values[i])
        assert (rows[i].n, rows[i].method) == (one.n, one.method)
        got = (rows[i].mean, rows[i].lo, rows[i].hi)
        assert got == pytest.approx((one.mean, one.lo, one.hi), nan_ok=True)
    assert (rows[25].method, rows[35].method) == (BOOTSTRAP_T, ONE_SEED)


def test_welch_difference_closed_form_and_coverage():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])
    d = difference_interval(a, b)  # equal n and s: Welch is the pooled t with 2n-2 = 4 df
    half = stats.t.ppf(0.975, 4) * math.sqrt(1 / 3 + 1 / 3)
    assert (d.diff, d.lo, d.hi) == (1.0, pytest.approx(1 - half), pytest.approx(1 + half))
    assert (d.n, d.n_ref, d.method, d.excludes_zero) == (3, 3, WELCH, False)
    assert difference_interval(a + 5, b).excludes_zero
    assert difference_interval(b - 5, a).excludes_zero  # below 0 too
    no_spread = difference_interval([2.0, 2.0], [1.0, 1.0, 1.0])
    assert (no_spread.lo, no_spread.hi, no_spread.excludes_zero) == (1.0, 1.0, True)
    single = difference_interval([2.0], b)  # one seed: a difference, no interval
    assert single.diff == 1.0 and math.isnan(single.lo) and single.method == ""
    rng = np.random.default_rng(11)  # unequal spreads and seeds: still ~95%
    hits = [
        (lambda d: d.lo <= 0.2 <= d.hi)(
            difference_interval(rng.normal(0.2, 0.01, 3), rng.normal(0.0, 0.05, 5))
        )
        for _ in range(DRAWS)
    ]
    assert np.mean(hits) == pytest.approx(0.95, abs=0.02)


def test_methods_text_says_which_interval():
    ivs = [Interval(0, -1, 1, 3, STUDENT_T), Interval(0, -1, 1, 4, STUDENT_T)]
    assert methods_text(ivs) == "Student t, n=3-4"
    ivs += [Interval(0, -1, 1, 6, BOOTSTRAP_T), Interval(0, math.nan, math.nan, 1, ONE_SEED)]
    assert methods_text(ivs) == "Student t, n=3-4; bootstrap-t, n=6; 1 seed: no interval"
    assert methods_text([]) == "no values"
