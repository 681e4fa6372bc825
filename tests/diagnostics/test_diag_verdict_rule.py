"""The torch-free collapse rule: loss jitter, the per-epoch states and the run's hysteresis."""

import dataclasses
import math

import numpy as np
import pytest

from siamlab.diagnostics.config import DiagnosticsConfig, VerdictConfig
from siamlab.diagnostics.verdict_rule import (
    VERDICTS,
    EpochSignals,
    RunVerdict,
    judge_epoch,
    loss_jitter,
    run_verdict,
)

# Explicit thresholds, so the tests do not move when the calibrated defaults do.
CFG = VerdictConfig(
    hold_evaluations=3,
    collapsed_residual_norm=0.1,
    dimensional_erank_fraction=0.05,
    partial_residual_norm=0.7,
    partial_erank_fraction=0.25,
    partial_residual_std=0.9,
    not_converging_progress=0.2,
    improving_drop=0.02,
    unstable_noise_ratio=3.0,
)
# A healthy evaluation: 89% of the way from -0.1 to -1, full residual, noise ratio 1.
HEALTHY = EpochSignals(
    epoch=4,
    loss=-0.9,
    start_loss=-0.1,
    earlier_loss=-0.88,
    residual_norm=0.8,
    residual_erank_fraction=0.4,
    jitter=0.01,
    noise=0.01,
    residual_std=0.98,
)


def _state(**changes) -> str:
    return judge_epoch(CFG, dataclasses.replace(HEALTHY, **changes))[0]


def test_loss_jitter_closed_forms():
    assert loss_jitter(np.linspace(0.0, -0.9, 40)) == pytest.approx(0.0, abs=1e-12)  # trend
    a = 0.2  # second differences of +-a are -+4a: sqrt(16 a^2 / 6)
    assert loss_jitter([a * (-1) ** i for i in range(41)]) == pytest.approx(4 * a / math.sqrt(6))
    assert loss_jitter([-0.5 + a * (-1) ** i for i in range(41)]) == pytest.approx(
        4 * a / math.sqrt(6)
    )  # the level does not matter
    rng = np.random.default_rng(0)
    s = 0.03
    noisy = s * rng.standard_normal(20000) + np.linspace(0.0, -1.0, 20000)
    assert loss_jitter(noisy) == pytest.approx(s, rel=0.03)  # i.i.d. noise -> its std
    for short in ([], [0.1], [0.1, 0.2]):
        assert math.isnan(loss_jitter(short))  # fewer than 3 values: not judged
    assert loss_jitter([-0.5, math.nan, -0.6, -0.7]) == math.inf
    assert loss_jitter([math.inf]) == math.inf  # non-finite wins over "too short"


def test_the_baseline_is_healthy_and_every_state_is_reachable():
    state, evidence = judge_epoch(CFG, HEALTHY)
    assert state == "healthy" and "residual norm 0.80" in evidence
    assert "erank/min(d,N) 0.40, std*sqrt(d) 0.98" in evidence  # why not partial_collapse
    reached = {
        _state(),
        _state(finite=False),
        _state(residual_norm=0.05),
        _state(residual_erank_fraction=0.01),
        _state(residual_norm=0.5, residual_erank_fraction=0.1),
        _state(loss=-0.15, earlier_loss=-0.15),
    }
    assert reached == set(VERDICTS)


def test_unstable_on_non_finite_values_and_on_an_oscillating_loss():
    for changes in ({"finite": False}, {"loss": math.nan}, {"jitter": math.inf}):
        state, evidence = judge_epoch(CFG, dataclasses.replace(HEALTHY, **changes))
        assert state == "unstable" and evidence.startswith("non-finite"), changes
    # jitter 4x the sampling noise > 3x; the residual and the loss look healthy
    state, evidence = judge_epoch(CFG, dataclasses.replace(HEALTHY, jitter=0.04))
    assert state == "unstable" and "4.0x" in evidence and not evidence.startswith("non-finite")
    assert _state(jitter=0.029) == "healthy"  # 2.9x: within the threshold
    assert _state(jitter=0.04, residual_norm=0.0) == "unstable"  # first in the order
    assert _state(jitter=0.5, noise=math.nan) == "healthy"  # noise not measured: not judged
    assert _state(jitter=0.5, noise=0.0) == "healthy"
    tolerant = VerdictConfig(unstable_noise_ratio=5.0)
    assert judge_epoch(tolerant, dataclasses.replace(HEALTHY, jitter=0.04))[0] == "healthy"


def test_collapsed_needs_a_vanished_residual_and_a_loss_that_went_down():
    state, evidence = judge_epoch(CFG, dataclasses.replace(HEALTHY, residual_norm=0.031))
    assert state == "collapsed" and "0.031 < 0.1" in evidence and "-0.900" in evidence
    assert _state(residual_norm=0.1) == "healthy"  # strictly under the threshold
    # a constant output whose loss has not gone down (random init): not "collapsed", and
    # never "dimensional_collapse" (the shape of a vanished residual is noise)
    state, evidence = judge_epoch(
        CFG,
        dataclasses.replace(HEALTHY, residual_norm=0.01, residual_erank_fraction=0.001, loss=-0.15),
    )
    assert state == "not_converging" and "has not gone down (-0.100 -> -0.150)" in evidence
    # the threshold is configurable: a residual of 0.3 is a collapse under 0.5
    loose = VerdictConfig(collapsed_residual_norm=0.5)
    assert judge_epoch(loose, dataclasses.replace(HEALTHY, residual_norm=0.3))[0] == "collapsed"
    assert _state(residual_norm=0.3) == "healthy"


def test_dimensional_collapse_comes_before_not_converging():
    state, evidence = judge_epoch(CFG, dataclasses.replace(HEALTHY, residual_erank_fraction=0.01))
    assert state == "dimensional_collapse" and "0.01 < 0.05" in evidence
    assert _state(residual_erank_fraction=0.05) == "healthy"
    assert _state(residual_erank_fraction=0.01, loss=-0.15, earlier_loss=-0.15) == (
        "dimensional_collapse"
    )
    assert _state(residual_erank_fraction=math.nan) == "healthy"  # not measured: not judged


def test_not_converging_unless_the_loss_is_still_falling():
    # -0.1 -> -0.15 is 6% of the way to -1 (< 20%), flat over the last evaluations
    state, evidence = judge_epoch(CFG, dataclasses.replace(HEALTHY, loss=-0.15, earlier_loss=-0.15))
    assert state == "not_converging" and "6% of the way" in evidence
    assert _state(loss=-0.15, earlier_loss=math.nan) == "healthy"  # no trend yet: too young
    # no start loss to measure progress from (NaN progress): not judged not_converging
    assert _state(start_loss=math.inf, loss=-0.15, earlier_loss=-0.15) == "healthy"
    assert _state(loss=-0.15, earlier_loss=-0.14) == "not_converging"  # drop 0.01 <= 0.02
    # still falling by 0.05: not converged yet, but healthy
    state, evidence = judge_epoch(CFG, dataclasses.replace(HEALTHY, loss=-0.15, earlier_loss=-0.1))
    assert state == "healthy" and evidence.startswith("not converged yet")
    # 20% of the way is converging: -0.1 + 0.2 * (-0.9) = -0.28
    assert _state(loss=-0.29, earlier_loss=-0.29) == "healthy"
    assert dataclasses.replace(HEALTHY, loss=-0.28).progress == pytest.approx(0.2)
    assert dataclasses.replace(HEALTHY, start_loss=-1.0, loss=-1.0).progress == 1.0  # no room


def test_a_large_offset_over_a_full_rank_residual_is_healthy():
    """Offset 3 sqrt(d) over an isotropic cloud: residual norm sqrt(1 - 0.9) = 0.32."""
    assert _state(residual_norm=math.sqrt(1 - 9 / 10), residual_erank_fraction=0.95) == "healthy"


def test_partial_collapse_needs_a_dominant_centre_a_low_rank_residual_and_progress():
    """The no-predictor control stalled on its way (digits: norm 0.57, erank 0.0x)."""
    state, evidence = judge_epoch(
        CFG, dataclasses.replace(HEALTHY, residual_norm=0.57, residual_erank_fraction=0.08)
    )
    assert state == "partial_collapse"
    assert "0.57 < 0.7" in evidence and "0.08 < 0.25" in evidence and "-0.900" in evidence
    assert _state(residual_norm=0.57, residual_erank_fraction=0.25) == "healthy"  # strict
    assert _state(residual_norm=0.7, residual_erank_fraction=0.08) == "healthy"  # strict
    # a healthy-rank residual under a large centre is healthy (the offset alone is not it)
    assert _state(residual_norm=0.4, residual_erank_fraction=0.45) == "healthy"
    # a low-rank residual that is most of the embedding: healthy (or dimensional, below 0.05)
    assert _state(residual_norm=0.9, residual_erank_fraction=0.08) == "healthy"
    # the loss did not go down: not a collapse at all, the run does not converge
    assert _state(residual_norm=0.57, residual_erank_fraction=0.08, loss=-0.15,
                  earlier_loss=-0.15) == "not_converging"  # fmt: skip
    # or its directions crowd a few channels: the paper's std, taken on the residual
    # (no stop-gradient on the CIFAR subset: norm 0.47, erank 0.21, residual std 0.68)
    state, evidence = judge_epoch(
        CFG,
        dataclasses.replace(
            HEALTHY, residual_norm=0.47, residual_erank_fraction=0.3, residual_std=0.68
        ),
    )
    assert state == "partial_collapse" and "std*sqrt(d) 0.68 < 0.9" in evidence
    assert "erank" not in evidence  # only what crossed is named
    assert _state(residual_norm=0.47, residual_erank_fraction=0.3, residual_std=0.9) == "healthy"
    assert _state(residual_norm=0.47, residual_erank_fraction=0.3, residual_std=math.nan) == (
        "healthy"
    )  # not measured: not judged
    assert _state(residual_norm=0.9, residual_erank_fraction=0.3, residual_std=0.5) == "healthy"
    # the more specific states win: a vanished residual, then few directions
    assert _state(residual_norm=0.05, residual_erank_fraction=0.08) == "collapsed"
    assert _state(residual_norm=0.57, residual_erank_fraction=0.01) == "dimensional_collapse"


def _fold(states: str, hold: int = 3, start: int = 1) -> list[RunVerdict]:
    """Run verdict after each evaluation of a trajectory written as letters."""
    names = {"h": "healthy", "d": "dimensional_collapse", "c": "collapsed", "u": "unstable"}
    judged = [(start + i, names[s], f"{names[s]} at {start + i}") for i, s in enumerate(states)]
    return [run_verdict(judged[: i + 1], hold) for i in range(len(judged))]


def test_a_flip_flopping_trajectory_keeps_its_verdict():
    runs = _fold("hhh" + "dh" * 5)
    assert [r.verdict for r in runs[2:]] == ["healthy"] * 11
    assert all(r.onset_epoch == 1 and not r.provisional for r in runs[2:])
    # the evidence is the latest evaluation in the entered state, with the onset
    assert runs[-1].evidence.startswith("healthy at 13; since epoch 1")
    assert runs[-2].evidence.startswith("healthy at 11; since epoch 1")  # latest was "d"


def test_a_state_is_entered_after_hold_evaluations_from_the_streak_start():
    runs = _fold("hhhddd")
    assert [r.verdict for r in runs[2:]] == ["healthy"] * 3 + ["dimensional_collapse"]
    assert runs[-1].onset_epoch == 4 and not runs[-1].provisional
    assert "since epoch 4 (entered after 3 evaluations)" in runs[-1].evidence
    # on an eval schedule of every 20 epochs the onset is an epoch number, not an index
    judged = [(e, "collapsed", "c") for e in (1, 20, 40)]
    assert run_verdict(judged, 3) == RunVerdict(
        "collapsed", 1, run_verdict(judged, 3).evidence, False
    )
    judged = [(1, "healthy", "h"), *[(e, "collapsed", "c") for e in (20, 40, 60)]]
    assert run_verdict(judged, 3).onset_epoch == 20
    one = run_verdict([(1, "healthy", "h")], hold=1)
    assert one.verdict == "healthy" and not one.provisional
    assert "entered after 1 evaluation)" in one.evidence


def test_provisional_until_a_state_holds():
    assert run_verdict([], 3) == RunVerdict()
    runs = _fold("hhd")
    assert runs[0].provisional and runs[0].verdict == "healthy" and runs[0].onset_epoch == 1
    assert runs[1].provisional and "provisional: 2 of the 3" in runs[1].evidence
    last = runs[2]  # the latest state, its streak just started
    assert last == RunVerdict("dimensional_collapse", 3, last.evidence, True)
    assert last.evidence.startswith("dimensional_collapse at 3; since epoch 3")


def test_non_finite_values_enter_unstable_at_once_an_oscillation_does_not():
    judged = [(e, "healthy", "h") for e in (1, 2, 3)]
    blown = run_verdict([*judged, (4, "unstable", "non-finite loss or embeddings at epoch 4")], 3)
    assert blown.verdict == "unstable" and blown.onset_epoch == 4 and not blown.provisional
    assert "since epoch 4" in blown.evidence
    wobbly = run_verdict([*judged, (4, "unstable", "loss jitter 0.1 = 5.0x ...")], 3)
    assert wobbly.verdict == "healthy"
    first = run_verdict([(1, "unstable", "non-finite loss or embeddings at epoch 1")], 3)
    assert first.verdict == "unstable" and not first.provisional


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        VerdictConfig(collapsed_residual_norm=0)
    with pytest.raises(ValueError):
        VerdictConfig(hold_evaluations=0)
    with pytest.raises(ValueError):
        DiagnosticsConfig(verdict={"made_up": 1})
    with pytest.raises(ValueError):
        DiagnosticsConfig(verdict={"collapsed_loss": -0.5})  # removed with the old rule
