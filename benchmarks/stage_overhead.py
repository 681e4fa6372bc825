r"""Cost of the per-stage spectra (``diagnostics.hooks: stages``) against training time.

Runs a few real training steps of a profile (``siamlab.run.train_run.train_run``) and, at
the epoch's end, in place of the usual diagnostics, times alternately (``--repeats``):

* the kNN bank's eval pass as it is without the stage hook, and with the stage outputs
  of the probe rows recorded on its way (``ProbeCache.expect_stages``), and the time
  spent inside the forward hooks' pooling and row keeping, summed directly (the
  difference of the two passes is within the machine's noise);
* the hook's metrics (float64 Gram and eigenvalues, RankMe, erank, std per stage) on the
  probe set's stage outputs, measured at the probe size the full data would have
  (min(``probe_size``, N) rows of the stages' widths);
* the hook alone, without the bank pass, which then makes a pass of its own.

The overhead when due = (pooling + metrics) / an epoch's training time; amortised =
that / N of the profile's default ``spectrum_every_epochs`` (``auto``)::

    python benchmarks/stage_overhead.py                               # quick profile, ~1 min
    python benchmarks/stage_overhead.py --profile cifar10 --steps 3 --set train.batch_size=64 \\
        --set data.dataset=npz --set data.root=../shared/data --set data.train_limit=1024
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

import siamlab.diagnostics.stage_capture as capture_module
import siamlab.reporting.assemble as monitor_module
import siamlab.run.train_run as run_module
from siamlab.config.study import StudyFile, expand_study
from siamlab.diagnostics.monitor import Monitor
from siamlab.diagnostics.stage_hook import StageSpectrumHook, stage_values
from siamlab.train.views import EpochView, StepView

TIMES: dict[str, list[float]] = {}
WIDTHS: list[int] = []
POOLING = [0.0]  # seconds inside the forward hooks' pooling and StageCapture.keep
_pool, _keep = capture_module.global_average, capture_module.StageCapture.keep


def _timed(key: str, start: float) -> None:
    TIMES.setdefault(key, []).append(time.perf_counter() - start)


def _timed_pool(output: torch.Tensor) -> torch.Tensor:
    t = time.perf_counter()
    pooled = _pool(output)
    POOLING[0] += time.perf_counter() - t
    return pooled


def _timed_keep(self: capture_module.StageCapture, rows: torch.Tensor) -> None:
    t = time.perf_counter()
    _keep(self, rows)
    POOLING[0] += time.perf_counter() - t


class StageTimedMonitor(Monitor):
    """Times the training steps and, at the epoch's end, the stage hook's parts."""

    repeats = 3
    _last: float | None = None

    def on_step_end(self, view: StepView) -> None:
        now = time.perf_counter()
        if self._last is not None:  # step 1 warms up
            TIMES.setdefault("step", []).append(now - self._last)
        self._last = now

    def on_epoch_end(self, view: EpochView) -> None:
        hook = StageSpectrumHook()
        for _ in range(self.repeats):
            plain = self.make_probes()
            t = time.perf_counter()
            plain.get("bank")
            _timed("bank pass", t)
            with_stages = self.make_probes()
            with_stages.expect_stages({"probe"})
            t, POOLING[0] = time.perf_counter(), 0.0
            with_stages.get("bank")
            _timed("bank pass recording the probe rows' stages", t)
            TIMES.setdefault("... of it in pooling and keeping rows", []).append(POOLING[0])
            t = time.perf_counter()
            hook.on_epoch(view, with_stages)
            _timed("stage metrics at this probe size", t)
            alone = self.make_probes()
            t = time.perf_counter()
            hook.on_epoch(view, alone)
            _timed("stage hook with a pass of its own", t)
        WIDTHS[:] = [x.shape[1] for x in with_stages.stages("probe")]
        self._last = None


def main() -> None:
    """Run the measurement and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--steps", type=int, default=8, help="1 warm-up + timed steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-train", type=int, default=None, help="N of the full data")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="siamlab-stages-"))
    sets = [f"train.max_steps={args.steps}", f"output.root={out}", *args.sets]
    study = StudyFile(name="bench", variants={"default": {}}, seeds=[0])
    spec = expand_study(study, sets=sets, profile=args.profile)[0]
    cfg, diag = spec.config, spec.config.diagnostics
    StageTimedMonitor.repeats = args.repeats
    monitor_module.Monitor = StageTimedMonitor  # type: ignore[misc]
    capture_module.global_average = _timed_pool
    capture_module.StageCapture.keep = _timed_keep  # type: ignore[method-assign]
    t0 = time.perf_counter()
    run_module.train_run(spec, progress=False)
    wall = time.perf_counter() - t0

    from siamlab.data.build import build_datasets

    data = build_datasets(cfg.data, spec.seed, 1)
    n_bank = len(data.train_eval)
    n_full = args.full_train or n_bank
    n_probe = min(diag.probe_size or n_full, n_full)
    med = {k: statistics.median(v) for k, v in TIMES.items()}
    g = torch.Generator().manual_seed(0)
    features = tuple(torch.randn(n_probe, c, generator=g).relu() for c in WIDTHS)
    t = time.perf_counter()
    stage_values(features, torch.device("cpu"))
    metric_full = time.perf_counter() - t
    per_image_step = med["step"] / cfg.train.batch_size
    epoch_train = per_image_step * n_full
    pooling_full = med["... of it in pooling and keeping rows"] * n_full / n_bank
    every = diag.every_epochs(diag.spectrum_every_epochs, cfg.train.epochs)
    due = pooling_full + metric_full
    own_pass = med["stage hook with a pass of its own"] - med["stage metrics at this probe size"]
    own_full = own_pass * n_probe / min(diag.probe_size or n_bank, n_bank) + metric_full

    backbone = cfg.model.backbone.kind
    print(
        f"\nper-stage spectra overhead: {args.profile} profile, {backbone}, stage widths "
        f"{WIDTHS}, batch {cfg.train.batch_size}, {torch.get_num_threads()} thread(s), "
        f"wall {wall:.0f} s; medians of {args.repeats}"
    )
    for key, value in med.items():
        print(f"  {key:46s} {value:8.3f} s")
    print(f"  {'stage metrics at probe size ' + str(n_probe):46s} {metric_full:8.3f} s")
    steps = math.ceil(n_full / cfg.train.batch_size)
    print(f"at N = {n_full} training images ({steps} steps), probe set {n_probe}:")
    print(
        f"  training epoch {epoch_train:.1f} s; schedule every {every} of {cfg.train.epochs} epochs"
    )
    for label, cost in (("with the kNN bank's pass", due), ("with a pass of its own", own_full)):
        print(
            f"  {label:26s} {cost:7.2f} s when due = {100 * cost / epoch_train:6.3f}% of the "
            f"epoch -> {100 * cost / every / epoch_train:6.3f}% amortised (budget 5%)"
        )


if __name__ == "__main__":
    main()
