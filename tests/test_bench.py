"""``siamlab bench``: the reference loop, the timing primitives and the command."""

import math
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from siamlab.bench.measure import Arm, interleave, matmul_peak, paired_ratio, step_flops
from siamlab.bench.reference import ReferenceStep, reference_loss, reference_model
from siamlab.bench.runner import BASELINE, run_bench
from siamlab.cli import app
from siamlab.config.study import StudyFile, expand_study
from siamlab.models.siamese import create_model
from siamlab.objectives import simsiam_loss
from tests.conftest import TINY

CPU = torch.device("cpu")
FAST = ["--set", "train.threads=1", "--set", "train.batch_size=32", "--set", "data.train_limit=256"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: fast and steady on a shared 2-core machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(profile: str, sets: list[str]):
    return expand_study(StudyFile(name="t"), profile, sets)[0].config


@pytest.mark.parametrize(
    ("profile", "sets", "side"),
    [
        ("quick", [], 16),
        ("cifar10", ["model.dim=128", "model.projector.hidden_dim=128"], 8),
        ("imagenet", ["model.backbone=resnet18", "model.dim=64"], 32),
    ],
)
def test_reference_trains_the_same_network(profile, sets, side):
    cfg = _config(profile, sets)
    ours, ref = create_model(cfg.model), reference_model(cfg)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_ref = sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert n_ours == n_ref
    x1, x2 = torch.randn(4, 3, side, side), torch.randn(4, 3, side, side)
    ours_flops = step_flops(ours, lambda m, a, b: simsiam_loss(m(a, b), cfg.objective), x1, x2)
    assert ours_flops == step_flops(ref, reference_loss, x1, x2) > 0


def test_reference_step_is_one_sgd_update_of_the_reference_loss():
    """The yardstick's step: loss = reference_loss, then p <- p - lr (grad + wd p)."""
    cfg = _config("quick", [*TINY])
    torch.manual_seed(0)
    step = ReferenceStep(cfg, CPU)
    x1, x2 = torch.randn(16, 3, 8, 8), torch.randn(16, 3, 8, 8)
    before = [p.detach().clone() for p in step.model.parameters()]
    expected = reference_loss(step.model, x1, x2).item()  # train mode; BN stats move too
    step.model.zero_grad()
    loss = step(x1, x2)
    assert loss == pytest.approx(expected, rel=1e-6)
    lr, wd = cfg.optim.base_lr * cfg.train.batch_size / 256, cfg.optim.weight_decay
    for p, p0 in zip(step.model.parameters(), before, strict=True):
        if not p.requires_grad:
            assert torch.equal(p, p0)  # the reference's frozen bias
            continue
        torch.testing.assert_close(p, p0 - lr * (p.grad + wd * p0), rtol=1e-5, atol=1e-7)


def test_interleave_rotates_the_order_and_counts():
    calls: list[str] = []
    arms = [Arm(n, lambda k, n=n: calls.append(f"{n}{k}"), batch=4) for n in "ab"]
    interleave(arms, steps=5, block=2, device=CPU, warmup=1)
    assert calls == ["a1", "b1", "a2", "b2", "b2", "a2", "a1", "b1"]
    assert [a.images for a in arms] == [20, 20] and [len(a.block_rates) for a in arms] == [3, 3]
    assert all(a.rate > 0 for a in arms)


@pytest.mark.parametrize("n", [5, 10, 40, 41])
def test_paired_ratio_is_the_order_statistic_interval_of_the_median(n):
    """Closed form: [r_(k), r_(n+1-k)] covers the median with 1 - 2 F(k - 1), F the
    Binomial(n, 1/2) cdf; k is the largest with coverage >= 0.95 (all rounds below n=6)."""
    from scipy import stats

    ratios = np.random.default_rng(n).lognormal(0.0, 0.05, n)
    got = paired_ratio(list(ratios * 3.0), [3.0] * n)
    cover = [1 - 2 * stats.binom.cdf(k - 1, n, 0.5) for k in range(1, n // 2 + 1)]
    k = max([k for k, c in enumerate(cover, 1) if c >= 0.95], default=1)
    r = np.sort(ratios)
    assert got.low == pytest.approx(r[k - 1]) and got.high == pytest.approx(r[n - k])
    assert got.level == pytest.approx(cover[k - 1]) and got.rounds == n
    assert got.median == pytest.approx(np.median(ratios))
    assert (got.level >= 0.95) == (n >= 6)


def test_paired_ratio_holds_the_true_median_in_95_percent_of_draws():
    rng = np.random.default_rng(7)
    draws = rng.lognormal(0.0, 0.1, size=(2000, 20))  # per-round ratios, true median 1
    hits = [(lambda p: p.low <= 1.0 <= p.high)(paired_ratio(list(d), [1.0] * 20)) for d in draws]
    assert np.mean(hits) >= 0.95 - 3 * 0.005  # coverage 0.959 at n=20, binomial sd 0.005


def test_paired_ratio_needs_rounds_of_both_arms():
    with pytest.raises(ValueError, match="equal"):
        paired_ratio([1.0, 2.0], [1.0])


def test_matmul_peak_is_a_rate():
    assert 1e6 < matmul_peak(CPU, torch.float32, n=128, reps=2) < 1e15


def test_run_bench_with_speed_options_adds_a_baseline(tmp_path):
    sets = [*TINY, "train.precision=bf16", "train.channels_last=true", f"output.root={tmp_path}"]
    spec = expand_study(StudyFile(name="t"), "quick", sets)[0]
    report = run_bench(spec, steps=2, block=1, warmup=0, loader_batches=2, peak_n=128)
    assert [a.name for a in report.arms] == ["siamlab bf16+CL", BASELINE, "reference"]
    assert report.speedup is not None and report.speedup > 0
    paired = report.paired_speedup  # the fast arm's blocks over the fp32 arm's, per round
    assert paired is not None and paired.rounds == 2 and paired.low <= paired.high
    assert all(a.flops > 0 and a.images == 2 * 64 for a in report.arms)
    assert report.loader.rate > 0 and math.isfinite(report.peak_fp32)
    assert not any(tmp_path.iterdir())  # the bench writes nothing in the run's output root
    parts = dict(report.diag_part_shares)  # every step hook and sink, by its registered name
    assert {"loss", "grad_norm", "batch_geometry", "sink: RecorderSink", "other"} <= set(parts)
    assert sum(parts.values()) == pytest.approx(report.diag_share)


def test_siamlab_arm_trains_through_the_runs_epochs_so_epoch_schedules_apply(tmp_path):
    """F of the predictor alignment is kept only in the epochs whose alignment is due."""
    from siamlab.bench.runner import _siamlab_arm
    from siamlab.data.build import build_datasets
    from siamlab.diagnostics.predictor_hook import PredictorAlignmentHook

    sets = [*TINY, "data.train_limit=64", "train.epochs=40"]  # 1 step an epoch
    sets += ["diagnostics.predictor_every_epochs=2", f"output.root={tmp_path}"]
    spec = expand_study(StudyFile(name="t"), "quick", sets)[0]
    data = build_datasets(spec.config.data, spec.seed, 1)
    x = torch.randn(64, 3, 8, 8)
    pool = [(x, x.flip(0), torch.zeros(64, dtype=torch.long), torch.arange(64))]
    arm, _, monitor = _siamlab_arm(spec, data, CPU, pool, "siamlab")
    hook = next(h.hook for h in monitor.step_hooks if isinstance(h.hook, PredictorAlignmentHook))
    seen = []
    for _ in range(5):  # epochs 1-5: due 1, 2, 4 (every 2nd, and the first)
        arm.run_block(1)
        seen.append(hook._epoch + 1)
    monitor.close()
    assert seen == [1, 2, 2, 4, 4]


def test_bench_command_prints_both_rates_and_a_ratio():
    result = CliRunner().invoke(
        app,
        ["bench", "--steps", "2", "--block", "1", "--loader-batches", "2", "--peak-n", "256"]
        + FAST,
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"siamlab fp32\s.*\d", out) and re.search(r"reference\s.*\d", out)
    assert re.search(r"ratio siamlab / reference: \d+\.\d+x", out)
    assert re.search(r"round by round \d+\.\d+x, \d+% interval \d+\.\d+-\d+\.\d+ \(2 rounds", out)
    assert "data loader alone" in out and "matmul peak" in out and "step diagnostics" in out
    assert re.search(r"by part: \S+ \d+\.\d%", out)
    assert re.search(r"siamlab's steps went through epochs 1-\d+ of the run's", out)


def test_bench_command_bad_input_exits_2():
    result = CliRunner().invoke(app, ["bench", "--set", "train.nope=1"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("fused_sgd.py", ["the same bits after them: True", "fused SGD / reference", "97%:"]),
        ("nan_fill.py", ["fill on", "fill off", "paired ratio"]),
    ],
)
def test_the_ab_scripts_run_their_arms_side_by_side(script, says):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sets = [a for s in TINY for a in ("--set", s)]
    cmd = [sys.executable, str(root / "benchmarks" / script), "--steps", "6", "--block", "1"]
    done = subprocess.run([*cmd, *sets], capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    for text in says:
        assert text in done.stdout, done.stdout


def test_the_views_benchmark_times_both_commits_and_compares_their_bits():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("needs a git checkout (the base commit's worktree)")
    sets = [a for s in TINY for a in ("--set", s)]
    cmd = [sys.executable, str(root / "benchmarks" / "batched_views.py"), "--base", "HEAD"]
    cmd += ["--rounds", "1", "--batches", "1", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    for text in ("base:", "here:", "speed-up here over base", "the same views bit for bit:"):
        assert text in done.stdout, done.stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "siamlab/data"], capture_output=True, text=True, cwd=root
    ).stdout
    if not dirty:  # the views' code is HEAD's: the same bits
        assert "the same views bit for bit: yes" in done.stdout, done.stdout
    assert (
        "siamlab-views-"
        not in subprocess.run(
            ["git", "worktree", "list"], capture_output=True, text=True, cwd=root
        ).stdout
    )  # the base's worktree is removed again
