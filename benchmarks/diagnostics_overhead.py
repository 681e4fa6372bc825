"""Overhead of the collapse diagnostics at the ``cifar10`` profile's defaults.

Runs one short real training (``siamlab.run.train_run.train_run``: the cifar10 profile's ResNet-18,
d = 2048, batch 512, on the CIFAR-10 subset) in which the diagnostics' step hooks run on
every other step only, so steps with and without them alternate side by side under the same
machine load. Every step's training time (callback to callback) and hook time are measured
directly; at the end of the epoch every epoch diagnostic runs (the first/last epoch is always
evaluated) and is timed per hook and per probe pass. Then:

* per-step overhead = mean step-hook time / mean training step time (budget <= 3%);
* per-epoch overhead = the eval-epoch cost amortised over the default ``"auto"`` schedule
  (every ceil(800 / 40) = 20 epochs at the profile's 800 epochs) over the training time of an
  epoch (budget <= 5%), extrapolated to the full subset (16k train / 4k test) and to CIFAR-10
  (50k / 10k): probe passes scale with the images; the metric time is scaled by
  min(8192, N) / N_probe, an upper bound (eigen-decompositions do not grow with N).

    python benchmarks/diagnostics_overhead.py                    # ~5 min on 2 CPU cores
    python benchmarks/diagnostics_overhead.py --train-limit 4096 --set train.threads=2
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import siamlab.reporting.assemble as monitor_module
import siamlab.run.train_run as run_module
from siamlab.config.study import StudyFile, expand_study
from siamlab.diagnostics.config import epoch_due
from siamlab.diagnostics.monitor import Monitor, stage_sets
from siamlab.train.views import EpochView, StepView

DATA = Path(os.environ.get("SIAMLAB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


class TimedMonitor(Monitor):
    """A Monitor that runs its step hooks on odd steps only and times everything."""

    train_s: dict[bool, list[float]] = {True: [], False: []}  # keyed by "hooks ran"
    hook_s: list[float] = []
    epoch_parts: dict[str, float] = {}
    _last_end: float | None = None

    def on_step_end(self, view: StepView) -> None:
        start = time.perf_counter()
        with_hooks = view.step % 2 == 1
        if self._last_end is not None and view.step > 1:  # step 1 warms up
            TimedMonitor.train_s[with_hooks].append(start - self._last_end)
        if with_hooks:
            super().on_step_end(view)
            if view.step > 1:
                TimedMonitor.hook_s.append(time.perf_counter() - start)
        self._last_end = time.perf_counter()

    def on_epoch_end(self, view: EpochView) -> None:
        parts: dict[str, float] = {}
        TimedMonitor.epoch_parts = parts  # the last epoch's
        probes = self.make_probes()
        due = [h for h in self.epoch_hooks if epoch_due(view.epoch, view.is_last, h.epoch_every)]
        probes.expect_stages(stage_sets(due))  # as Monitor: the bank pass records them
        inner_get = probes.get

        def timed_get(name: str) -> Any:
            t = time.perf_counter()
            out = inner_get(name)
            key = f"probe pass: {name}"
            parts[key] = parts.get(key, 0.0) + time.perf_counter() - t
            return out

        probes.get = timed_get  # type: ignore[method-assign]
        values: dict[str, Any] = {}
        for hook in due:
            t, before = time.perf_counter(), _probe_seconds(parts)
            values.update(hook.on_epoch(view, probes))
            spent = time.perf_counter() - t - (_probe_seconds(parts) - before)
            parts[type(hook).__name__] = spent  # metric time, without the probe passes
        t = time.perf_counter()
        self._finish("epoch", view.epoch, values)
        parts["sinks (recorder, TensorBoard figures)"] = time.perf_counter() - t
        self._last_end = None


def _probe_seconds(parts: dict[str, float]) -> float:
    return sum(v for k, v in parts.items() if k.startswith("probe pass"))


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-limit", type=int, default=2560, help="> d so W_p can be fitted")
    ap.add_argument("--test-limit", type=int, default=640)
    ap.add_argument("--steps", type=int, default=5, help="1 warm-up + alternating steps")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    if not (DATA / "cifar10_train.npz").is_file():
        raise SystemExit(f"CIFAR-10 subset not found under {DATA} (set SIAMLAB_DATA)")
    out = Path(tempfile.mkdtemp(prefix="siamlab-bench-"))
    sets = [
        "data.dataset=npz",
        f"data.root={DATA}",
        f"data.train_limit={args.train_limit}",
        f"data.test_limit={args.test_limit}",
        f"train.max_steps={args.steps}",
        f"output.root={out}",
        *args.sets,
    ]
    study = StudyFile(name="bench", variants={"default": {}}, seeds=[0])
    spec = expand_study(study, sets=sets, profile="cifar10")[0]
    cfg = spec.config
    monitor_module.Monitor = TimedMonitor  # type: ignore[misc]
    t0 = time.perf_counter()
    run_module.train_run(spec, progress=False)
    wall = time.perf_counter() - t0

    plain, hooked = TimedMonitor.train_s[False], TimedMonitor.train_s[True]
    step_s = statistics.mean(plain + hooked)
    hook_s = statistics.mean(TimedMonitor.hook_s)
    parts = TimedMonitor.epoch_parts
    probe_s, total_epoch_diag = _probe_seconds(parts), sum(parts.values())
    metric_s = total_epoch_diag - probe_s
    n_train, n_test = args.train_limit, args.test_limit
    per_image = probe_s / (n_train + n_test)  # bank + test passes (probe reuses the bank)
    b, d = cfg.train.batch_size, cfg.model.dim
    every = cfg.diagnostics.every_epochs(cfg.diagnostics.eval_every_epochs, cfg.train.epochs)

    print(
        f"\nsiamlab diagnostics overhead  (cifar10 profile: {cfg.model.backbone.kind}, d={d}, "
        f"batch {b}; threads {cfg.train.threads or 'default'}; wall {wall:.0f} s)"
    )
    print(
        f"train step (no hooks / with hooks, training part): "
        f"{statistics.mean(plain):.2f} s / {statistics.mean(hooked):.2f} s  "
        f"({len(plain)}+{len(hooked)} steps)"
    )
    print(
        f"step hooks: {hook_s * 1e3:.1f} ms per step = {100 * hook_s / step_s:.2f}% "
        f"of the step (budget 3%)"
    )
    print(f"\neval epoch at N_train={n_train}, N_test={n_test} (every hook due):")
    for name, sec in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:42s} {sec:7.2f} s")
    print(f"  {'total':42s} {total_epoch_diag:7.2f} s")
    print(
        f"\namortised per-epoch overhead at the default schedule (every {every} epochs of "
        f"{cfg.train.epochs}), budget 5%:"
    )
    for label, nt, ne in (
        ("this run", n_train, n_test),
        ("CIFAR-10 subset 16k/4k", 16000, 4000),
        ("CIFAR-10 50k/10k", 50000, 10000),
    ):
        epoch_train = math.ceil(nt / b) * step_s
        n_probe = min(cfg.diagnostics.probe_size or nt, nt)
        eval_cost = per_image * (nt + ne) + metric_s * max(1.0, n_probe / n_train)
        print(
            f"  {label:24s} epoch {epoch_train:8.0f} s, eval epoch +{eval_cost:6.0f} s "
            f"({100 * eval_cost / epoch_train:5.1f}% when due) -> "
            f"{100 * eval_cost / every / epoch_train:4.2f}% amortised"
        )


if __name__ == "__main__":
    main()
