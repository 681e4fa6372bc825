"""The verdict hook on synthetic step/epoch values: what it records, resumes and writes."""

import math

import numpy as np
import pytest

from siamlab.diagnostics.config import DiagnosticsConfig, VerdictConfig, epoch_due
from siamlab.diagnostics.verdict import (
    VerdictJudge,
    loss_jitter,
    signals_from_epochs,
    verdict_attrs,
)
from siamlab.diagnostics.verdict_rule import RunVerdict, judge_epoch

D = 2048
SEM = 0.01  # the step loss's sampling noise the cosines below are drawn with
TRAJECTORY = ((0.1, 0.8), (0.8, 0.85), (0.85, 0.9))  # cosine over three healthy epochs


class Run:
    """Feeds a VerdictJudge as the monitor does: steps (numbered on), then epochs."""

    def __init__(self, judge: VerdictJudge, seed: int = 0) -> None:
        self.judge, self.step, self.epoch = judge, 0, 0
        self.rng = np.random.default_rng(seed)

    def steps(self, cosines, **extra) -> None:
        for c in cosines:
            self.step += 1
            values = {"loss": -c, "lr": 0.1, "pz_cosine_train": c, "pz_cosine_sem_train": SEM}
            assert self.judge.summarise("step", self.step, values | extra) == {}

    def cosines(self, start: float, stop: float, n: int = 50) -> list[float]:
        return list(np.linspace(start, stop, n) + SEM * self.rng.standard_normal(n))

    def end(self, residual_norm: float = 0.8, erank: float = 0.4, **values) -> dict:
        self.epoch += 1
        values = {
            "epoch_loss": -0.5,
            "z_std_eval": 0.9 / math.sqrt(D),
            "z_residual_norm": residual_norm,
            "z_residual_erank_fraction": erank,
        } | values
        return self.judge.summarise("epoch", self.epoch, values)


def test_steps_are_collected_and_the_epoch_records_what_it_judged():
    run = Run(VerdictJudge(VerdictConfig()))
    cosines = run.cosines(0.1, 0.8)
    run.steps(cosines)
    out = run.end()
    losses = [-c for c in cosines]
    assert out["cosine_loss"] == pytest.approx(np.mean(losses))
    assert out["start_loss"] == pytest.approx(np.mean(losses[:10]))  # start_steps = 10
    assert out["loss_jitter"] == pytest.approx(loss_jitter(losses))
    assert out["loss_noise"] == pytest.approx(SEM)
    assert out["loss_noise_ratio"] == pytest.approx(out["loss_jitter"] / SEM)
    assert 0.7 < out["loss_noise_ratio"] < 1.3  # i.i.d. noise of the sampling noise's size
    assert out["verdict"] == "healthy" and out["run_verdict"] == "healthy"
    assert out["run_verdict_provisional"] == 1.0 and out["run_verdict_onset_epoch"] == 1.0
    assert "since epoch 1" in out["run_verdict_evidence"]
    # the next epoch starts afresh, but keeps the run's start loss
    run.steps(run.cosines(0.8, 0.85))
    assert run.end()["start_loss"] == pytest.approx(np.mean(losses[:10]))


def test_epochs_without_eval_get_no_verdict():
    judge = VerdictJudge(VerdictConfig())
    judge.summarise("step", 1, {"loss": -0.5})
    out = judge.summarise("epoch", 1, {"epoch_loss": -0.5})
    assert set(out) == {"loss_jitter", "loss_noise", "loss_noise_ratio"}
    assert math.isnan(out["loss_jitter"]) and math.isnan(out["loss_noise"])  # < 3 steps
    assert judge.latest == "" and judge.run == RunVerdict()


def test_a_trajectory_enters_a_state_after_three_evaluations():
    run = Run(VerdictJudge(VerdictConfig()))
    for lo, hi in TRAJECTORY:
        run.steps(run.cosines(lo, hi))
        out = run.end()
    assert out["run_verdict"] == "healthy" and out["run_verdict_provisional"] == 0.0
    for k in (4, 5, 6):  # the residual loses its dimensions
        run.steps(run.cosines(0.9, 0.92))
        out = run.end(erank=0.01)
        assert out["verdict"] == "dimensional_collapse"
        assert out["run_verdict"] == ("healthy" if k < 6 else "dimensional_collapse")
    assert out["run_verdict_onset_epoch"] == 4.0
    assert "since epoch 4" in out["run_verdict_evidence"]


def test_an_oscillating_loss_and_a_nan_loss_are_unstable():
    run = Run(VerdictJudge(VerdictConfig()))
    run.steps([0.5 + 0.3 * (-1) ** i for i in range(50)])  # +-0.3 per step, noise 0.01
    out = run.end()
    assert out["verdict"] == "unstable" and out["loss_noise_ratio"] > 40
    assert out["run_verdict_provisional"] == 1.0  # one oscillating epoch is not yet a verdict
    run.steps([0.6, 0.7])
    run.judge.summarise("step", 53, {"loss": math.nan, "pz_cosine_train": math.nan})
    out = run.end(epoch_loss=math.nan)
    assert out["loss_jitter"] == math.inf and out["verdict"] == "unstable"
    assert out["run_verdict"] == "unstable" and out["run_verdict_provisional"] == 0.0
    # entered at once, from the start of the unstable streak
    assert out["run_verdict_onset_epoch"] == 1.0


def test_the_verdict_judges_the_negative_cosine_whatever_the_objective():
    """A cross-entropy run's loss sits near log d: judged on -pz_cosine_train instead."""
    judge = VerdictJudge(VerdictConfig())
    cosines = list(np.linspace(0.1, 0.8, 50))
    for i, c in enumerate(cosines, 1):
        judge.summarise("step", i, {"loss": math.log(512) - 0.1 * c, "pz_cosine_train": c})
    values = {"epoch_loss": math.log(512) - 0.07, "z_std_eval": 0.03}
    out = judge.summarise("epoch", 1, values | {"z_residual_norm": 0.9})
    assert out["cosine_loss"] == pytest.approx(-np.mean(cosines))
    assert out["verdict"] == "healthy"  # the raw CE loss (~6.2) would say not_converging
    assert out["loss_jitter"] == pytest.approx(0.0, abs=1e-12)  # the cosines are linear


def test_a_sparse_cosine_is_not_counted_twice_in_the_start_loss():
    """geometry_every_steps=3: pz_cosine_train arrives on steps 3, 6, 9, ... only."""
    cfg = VerdictConfig(start_steps=6)
    loss = {t: -0.1 - 0.05 * t for t in range(1, 13)}  # the default objective: loss = -cos

    def steps(judge: VerdictJudge, ts: range) -> None:
        for t in ts:
            values = {"loss": loss[t]} | ({"pz_cosine_train": -loss[t]} if t % 3 == 0 else {})
            judge.summarise("step", t, values)

    judge = VerdictJudge(cfg)
    steps(judge, range(1, 8))
    # steps 1, 2 before any cosine (the loss), then one cosine per measurement
    assert judge.state_dict()["start"] == pytest.approx([loss[t] for t in (1, 2, 3, 6)])
    out = judge.summarise("epoch", 1, {"epoch_loss": -0.4, "z_std_eval": 0.02})
    assert out["start_loss"] == pytest.approx(np.mean([loss[t] for t in (1, 2, 3, 6)]))
    assert out["cosine_loss"] == pytest.approx(np.mean([loss[3], loss[6]]))
    # a new epoch (after a resume) starting on a step without a cosine: still none counted
    resumed = VerdictJudge(cfg)
    resumed.load_state_dict(judge.state_dict())
    steps(resumed, range(8, 13))
    assert resumed.state_dict()["start"] == pytest.approx([loss[t] for t in (1, 2, 3, 6, 9, 12)])


def test_a_checkpointed_judge_resumes_to_the_same_run_verdict():
    full, cut = Run(VerdictJudge(VerdictConfig()), seed=3), Run(VerdictJudge(VerdictConfig()), 3)
    for run in (full, cut):
        for lo, hi in TRAJECTORY:
            run.steps(run.cosines(lo, hi))
            run.end()
        run.steps(run.cosines(0.9, 0.92, n=20))  # mid-epoch
    resumed = Run(VerdictJudge(VerdictConfig()))
    resumed.judge.load_state_dict(cut.judge.state_dict())
    assert resumed.judge.state_dict() == cut.judge.state_dict()
    assert resumed.judge.run == cut.judge.run and resumed.judge.run.verdict == "healthy"
    assert resumed.judge.latest == "healthy"
    resumed.step, resumed.epoch, resumed.rng = cut.step, cut.epoch, cut.rng
    for run in (full, resumed):
        run.steps(run.cosines(0.92, 0.93, n=30))
    a, b = full.end(erank=0.01), resumed.end(erank=0.01)
    assert a == b and a["verdict"] == "dimensional_collapse" and a["run_verdict"] == "healthy"
    assert full.judge.run == resumed.judge.run


def test_the_recorded_inputs_re_judge_to_the_recorded_verdicts():
    """analysis/verdict_calibration.py re-judges a run from its records alone."""
    cfg = VerdictConfig()
    run = Run(VerdictJudge(cfg))
    for k in range(6):
        run.steps(run.cosines(0.1 * k, 0.1 * k + 0.05))
        run.end(residual_norm=0.8 if k < 4 else 0.05)
    records = run.judge.state_dict()["epochs"]
    signals = signals_from_epochs(records, cfg)
    assert [judge_epoch(cfg, s)[0] for s in signals] == [r["verdict"] for r in records]
    assert {r["verdict"] for r in records} == {"healthy", "collapsed"}  # young: not yet judged
    assert math.isnan(signals[1].earlier_loss)  # trend over hold_evaluations = 3
    assert signals[2].earlier_loss == records[0]["cosine_loss"]
    assert all(
        math.isnan(s.earlier_loss)
        for s in signals_from_epochs(records, cfg.model_copy(update={"hold_evaluations": 1}))
    )
    missing = signals_from_epochs([{"epoch": 1, "cosine_loss": -0.5, "z_std_eval": math.nan}], cfg)
    assert not missing[0].finite and math.isnan(missing[0].residual_norm)


def test_verdict_attrs_a_diverged_run_is_unstable_and_thresholds_are_attrs():
    cfg = VerdictConfig(collapsed_residual_norm=0.2)
    run = RunVerdict("healthy", 3, "z residual norm 0.80; since epoch 3", provisional=False)
    attrs = verdict_attrs(run, "finished", cfg)
    assert attrs["verdict"] == "healthy" and attrs["verdict_onset_epoch"] == 3
    assert attrs["verdict_evidence"] == run.evidence and attrs["verdict_provisional"] == 0
    assert attrs["verdict_collapsed_residual_norm"] == 0.2
    assert attrs["verdict_hold_evaluations"] == 3.0
    assert {f"verdict_{k}" for k in VerdictConfig.model_fields} <= set(attrs)
    diverged = verdict_attrs(run, "diverged", cfg, diverged_step=17)
    assert diverged["verdict"] == "unstable" and "at step 17" in diverged["verdict_evidence"]
    assert diverged["verdict_provisional"] == 0
    assert verdict_attrs(run, "diverged", cfg)["verdict_evidence"] == "the loss became non-finite"
    empty = verdict_attrs(RunVerdict(), "running", cfg)
    assert empty["verdict"] == "" and empty["verdict_provisional"] == 1


def test_auto_epoch_schedule():
    cfg = DiagnosticsConfig()
    assert cfg.every_epochs("auto", 40) == 1  # quick profile: every epoch
    assert cfg.every_epochs("auto", 800) == 20  # cifar10 profile
    assert cfg.every_epochs(3, 800) == 3
    due = [e for e in range(1, 41) if epoch_due(e, e == 41, 20)]
    assert due == [1, 20, 40]
    assert epoch_due(7, True, 20)  # the last epoch is always evaluated
