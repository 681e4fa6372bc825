"""The collapse verdict on synthetic histories: each of the five outcomes, and the jitter."""

import math

import numpy as np
import pytest

from siamlab.diagnostics.config import DiagnosticsConfig, VerdictConfig, epoch_due
from siamlab.diagnostics.verdict import VERDICTS, VerdictJudge, judge, loss_jitter, verdict_attrs

D = 2048


def _epoch(
    judge_: VerdictJudge,
    losses,
    std_sqrt_d: float,
    erank_fraction: float | None = 0.3,
    uniformity: float = -2.5,
):
    """Feed one epoch of step losses and its epoch values; return the summary."""
    for loss in losses:
        assert judge_.summarise("step", {"loss": loss, "lr": 0.1}) == {}
    finite = [x for x in losses if math.isfinite(x)]
    values = {
        "epoch_loss": float(np.mean(losses)) if len(finite) == len(losses) else math.nan,
        "z_std_eval": std_sqrt_d / math.sqrt(D),
        "z_channel_std_eval": np.full(D, std_sqrt_d / math.sqrt(D)),
    }
    if erank_fraction is not None:
        values["z_erank_fraction"] = erank_fraction
        values["z_uniformity"] = uniformity
    return judge_.summarise("epoch", values)


def _noisy(start: float, stop: float, n: int = 50, noise: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    return list(np.linspace(start, stop, n) + noise * rng.standard_normal(n))


def test_the_five_verdicts_on_synthetic_histories():
    """Histories shaped like the real signals (README, 'Collapse diagnostics')."""
    cases = {
        # stop-grad: loss falls to ~-0.9, eval std*sqrt(d) ~0.96, rank spread out
        "healthy": (_noisy(-0.6, -0.9), 0.96, 0.3),
        # no stop-grad: loss -> -0.95, eval std*sqrt(d) ~0.05
        "collapsed": (_noisy(-0.9, -0.96), 0.05, 0.002),
        # std looks healthy but the rank is tiny (rank-10 subspace: std*sqrt(d) 0.98)
        "dimensional_collapse": (_noisy(-0.8, -0.9), 0.98, 10 / D),
        # loss alternating by +-0.3 from step to step (BN on the predictor output)
        "unstable": ([-0.5 + 0.3 * (-1) ** i for i in range(50)], 0.9, 0.3),
        # a fixed random predictor: the loss stays near 0
        "not_converging": (_noisy(-0.02, -0.05), 0.9, 0.3),
    }
    for expected, (losses, std, frac) in cases.items():
        out = _epoch(VerdictJudge(VerdictConfig()), losses, std, frac)
        assert out["verdict"] == expected, (expected, out)
    assert set(cases) == set(VERDICTS)
    # CIFAR subset without stop-grad: eval-mode BN leaves std*sqrt(d) at 0.53, but random
    # pairs are nearly identical (uniformity -0.3) while the loss is -0.89: collapsed
    nsg_cifar = _epoch(VerdictJudge(VerdictConfig()), _noisy(-0.88, -0.9), 0.53, 0.012, -0.3)
    assert nsg_cifar["verdict"] == "collapsed"


def test_nan_loss_is_unstable_and_a_diverged_run_ends_unstable():
    out = _epoch(VerdictJudge(VerdictConfig()), [-0.5, -0.6, math.nan, -0.7], 0.9)
    assert out["verdict"] == "unstable" and out["loss_jitter"] == math.inf
    cfg = VerdictConfig()
    assert verdict_attrs("healthy", "diverged", cfg)["verdict"] == "unstable"
    attrs = verdict_attrs("collapsed", "finished", cfg)
    assert attrs["verdict"] == "collapsed" and attrs["verdict_collapsed_std"] == 0.3
    assert verdict_attrs(None, "running", cfg)["verdict"] == ""


def test_thresholds_are_configurable_and_the_order_is_documented():
    cfg = VerdictConfig(collapsed_std=0.5, not_converging_loss=-0.95)
    # std 0.4*sqrt(d) counts as collapsed with the looser threshold
    assert judge(cfg, epoch_loss=-0.96, std_sqrt_d=0.4) == "collapsed"
    assert judge(VerdictConfig(), epoch_loss=-0.96, std_sqrt_d=0.4) == "healthy"
    # a constant output whose loss has not gone down (random init) is not "collapsed"
    assert judge(VerdictConfig(), epoch_loss=-0.1, std_sqrt_d=0.01) == "not_converging"
    strict = VerdictConfig(collapsed_loss=-0.8)
    assert judge(strict, epoch_loss=-0.4, std_sqrt_d=0.01, erank_fraction=0.01) == (
        "not_converging"  # never "dimensional_collapse" for a constant output
    )
    assert judge(VerdictConfig(), epoch_loss=-0.4, std_sqrt_d=0.01) == "collapsed"
    # unstable wins over everything, collapse over not_converging
    assert judge(VerdictConfig(), epoch_loss=-0.99, std_sqrt_d=0.0, jitter=0.5) == "unstable"
    # no rank measured: dimensional collapse is not judged
    assert judge(VerdictConfig(), epoch_loss=-0.9, std_sqrt_d=0.9) == "healthy"
    with pytest.raises(ValueError):
        VerdictConfig(collapsed_std=0)
    with pytest.raises(ValueError):
        DiagnosticsConfig(verdict={"made_up": 1})


def test_epochs_without_eval_get_no_verdict():
    judge_ = VerdictJudge(VerdictConfig())
    judge_.summarise("step", {"loss": -0.5})
    out = judge_.summarise("epoch", {"epoch_loss": -0.5})
    assert "verdict" not in out and math.isnan(out["loss_jitter"])  # < 3 steps: not judged


def test_loss_jitter_closed_forms():
    assert loss_jitter(np.linspace(0.0, -0.9, 40)) == pytest.approx(0.0, abs=1e-12)  # trend
    a = 0.2
    assert loss_jitter([a * (-1) ** i for i in range(41)]) == pytest.approx(4 * a / math.sqrt(6))
    rng = np.random.default_rng(0)
    noise = 0.03 * rng.standard_normal(20000) + np.linspace(0, -1, 20000) ** 2
    assert loss_jitter(noise) == pytest.approx(0.03, rel=0.03)  # i.i.d. noise -> its std
    assert math.isnan(loss_jitter([0.1, 0.2]))


def test_auto_epoch_schedule():
    cfg = DiagnosticsConfig()
    assert cfg.every_epochs("auto", 40) == 1  # quick profile: every epoch
    assert cfg.every_epochs("auto", 800) == 20  # cifar10 profile
    assert cfg.every_epochs(3, 800) == 3
    due = [e for e in range(1, 41) if epoch_due(e, e == 41, 20)]
    assert due == [1, 20, 40]
    assert epoch_due(7, True, 20)  # the last epoch is always evaluated


def test_the_verdict_judges_the_negative_cosine_whatever_the_objective():
    """A cross-entropy run's loss sits near log d: judged on -pz_cosine_train instead."""
    judge_ = VerdictJudge(VerdictConfig())
    cosines = _noisy(0.6, 0.8, noise=0.005)
    for c in cosines:
        judge_.summarise("step", {"loss": math.log(512) - 0.1 * c, "pz_cosine_train": c})
    values = {
        "epoch_loss": math.log(512) - 0.07,
        "z_std_eval": 0.95 / math.sqrt(D),
        "z_channel_std_eval": np.full(D, 0.95 / math.sqrt(D)),
        "z_erank_fraction": 0.3,
        "z_uniformity": -2.5,
    }
    out = judge_.summarise("epoch", values)
    assert out["verdict"] == "healthy"  # the raw CE loss (~6.2) would say not_converging
    assert out["loss_jitter"] == pytest.approx(loss_jitter([-c for c in cosines]))
    # the running state survives a checkpoint
    judge_.summarise("step", {"loss": 6.0, "pz_cosine_train": 0.7})
    restored = VerdictJudge(VerdictConfig())
    restored.load_state_dict(judge_.state_dict())
    assert restored.state_dict() == judge_.state_dict()
