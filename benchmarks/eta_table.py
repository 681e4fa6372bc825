"""Throughput, checkpoint cost and memory of the moving-average eta table, before and after.

Usage: python benchmarks/eta_table.py [--rows 1281167] [--dim 2048] [--steps 200]
    [--dir /tmp] [--arms after,before] [--before-commit b17372e]

Creates a rows x dim float16 memmap table (5.2 GB at ImageNet size; sparse until
written) and runs the moving-average update (read, blend, statistics, write; as
training calls it) on batches of 512 rows cut from one random permutation, as the
epoch sampler does: first each batch once (rows never written before, as in a first
epoch), then the same batches again in another order (rows written before, as in every
later epoch). The batches are drawn before the clock starts. It reports rows/s of the
whole update and of the table work inside it (the gathers and scatters: what stays on
the host when the blend runs on a GPU), page faults per row (read-ahead around a random
row, or one fault per row written), the time of a checkpoint snapshot and of a resume
from it, the folder's size on disk, and the process's memory (RssAnon: private memory;
RssFile: page-cache pages of the file mapped in, reclaimable by the kernel).

Both arms run in one process on the same batches: ``after`` is the current code,
``before`` the table and provider of ``--before-commit`` (read from git; the copy of the
whole file per snapshot), so the two are measured side by side on the same machine.
Each arm runs in a fresh process (the C allocator's state, which decides whether a
step's temporaries cost page faults, starts the same) after ``os.sync()`` (neither pays
for the other's writes still on their way to the disk).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from siamlab.eta.moving_average import MovingAverageTargets
from siamlab.eta.table import EtaTable
from siamlab.models.siamese import SiameseOutput

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "b17372e"  # the table copied the whole file at every checkpoint


def _memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _faults() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt + usage.ru_majflt


def _disk_mb(folder: Path) -> float:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()) / 1e6


def _module(name: str, source: str, replaces: dict[str, types.ModuleType]) -> types.ModuleType:
    """Execute ``source`` as module ``name``, its imports of ``replaces`` served by those."""
    module = types.ModuleType(name)
    saved = {key: sys.modules[key] for key in replaces}
    sys.modules.update(replaces)
    try:
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102
    finally:
        sys.modules.update(saved)
    return module


def before_classes(commit: str) -> tuple[type, type]:
    """``(EtaTable, MovingAverageTargets)`` as they were at ``commit``."""

    def source(path: str) -> str:
        cmd = ["git", "-C", str(ROOT), "show", f"{commit}:{path}"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    table = _module("eta_table_before", source("siamlab/eta/table.py"), {})
    provider = _module(
        "eta_moving_average_before",
        source("siamlab/eta/moving_average.py"),
        {"siamlab.eta.table": table},
    )
    return table.EtaTable, provider.MovingAverageTargets


class _Clock:
    """Adds up the seconds spent in the table's methods (the table work)."""

    def __init__(self, table: Any) -> None:
        self.seconds = 0.0
        for name in ("read", "gather", "write"):
            if hasattr(table, name):
                setattr(table, name, self._timed(getattr(table, name)))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def run_arm(
    classes: tuple[type, type], args: argparse.Namespace, batches: list[torch.Tensor]
) -> dict[str, float]:
    """One arm's figures: rows/s per phase, snapshot and resume seconds, memory, disk."""
    table_cls, provider_cls = classes
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = _memory_mb()
        table = table_cls(args.rows, args.dim, "float16", "memmap", Path(tmp))
        clock = _Clock(table)
        targets = provider_cls(table, momentum=0.8)
        z = torch.randn(args.batch, args.dim, generator=torch.Generator().manual_seed(1))
        out = SiameseOutput(z, z, z, z, z, z)
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(2))
        phases = {"first": batches, "again": [batches[int(i)] for i in order]}
        step = 0
        for phase, batch_list in phases.items():
            clock.seconds, faults, t0 = 0.0, _faults(), time.perf_counter()
            for idx in batch_list:
                targets.apply(out, idx, step)
                step += 1
            seconds, rows = time.perf_counter() - t0, len(batch_list) * args.batch
            figures[f"{phase}_update"] = rows / seconds
            figures[f"{phase}_table"] = rows / clock.seconds
            figures[f"{phase}_faults"] = (_faults() - faults) / rows
        mem = _memory_mb()
        figures["rss_anon"] = mem["RssAnon"] - start["RssAnon"]
        figures["rss_file"], figures["peak"] = mem["RssFile"], mem["VmHWM"]
        t0 = time.perf_counter()
        state = table.state_dict()
        figures["snapshot"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        table_cls(args.rows, args.dim, "float16", "memmap", Path(tmp)).load_state_dict(state)
        figures["resume"] = time.perf_counter() - t0
        figures["disk"] = _disk_mb(Path(tmp))
    return figures


ROWS = [  # (figure key, label, format)
    ("first_update", "update, rows never written (first epoch), rows/s", "{:,.0f}"),
    ("first_table", "  of which table work (gathers + scatters), rows/s", "{:,.0f}"),
    ("first_faults", "  page faults per row", "{:.1f}"),
    ("again_update", "update, rows written before (later epochs), rows/s", "{:,.0f}"),
    ("again_table", "  of which table work, rows/s", "{:,.0f}"),
    ("again_faults", "  page faults per row", "{:.1f}"),
    ("snapshot", "checkpoint snapshot, s", "{:.2f}"),
    ("resume", "resume from it, s", "{:.2f}"),
    ("disk", "folder on disk after both phases, MB", "{:,.0f}"),
    ("rss_anon", "RssAnon (private memory), MB", "{:+,.0f}"),
    ("rss_file", "RssFile (reclaimable page cache), MB", "{:,.0f}"),
]


def main() -> None:
    """Run the arms asked for and print their figures side by side."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_281_167)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dir", default=None, help="folder for the memmap (default: a temp dir)")
    ap.add_argument("--arms", default="after,before", help="in the order they run")
    ap.add_argument("--before-commit", default=BEFORE_COMMIT)
    ap.add_argument("--arm-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps * args.batch > args.rows:
        ap.error("--steps x --batch must not exceed --rows (one epoch's permutation)")
    if args.arm_json:  # one arm, in a process of its own: write its figures
        torch.manual_seed(0)
        perm = torch.randperm(args.rows, generator=torch.Generator().manual_seed(0))
        batches = list(perm[: args.steps * args.batch].split(args.batch))
        arm = args.arms
        classes = before_classes(args.before_commit) if arm == "before" else None
        figures = run_arm(classes or (EtaTable, MovingAverageTargets), args, batches)
        args.arm_json.write_text(json.dumps(figures))
        return
    results = {}
    for arm in args.arms.split(","):
        os.sync()  # the other arm's dirty pages reach the disk before this one starts
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--arms", arm, "--arm-json", out.name]
            subprocess.run(cmd, check=True)
            results[arm] = json.loads(Path(out.name).read_text())
    size_gb = args.rows * args.dim * 2 / 1e9
    print(
        f"memmap float16 table {args.rows:,} x {args.dim} ({size_gb:.1f} GB of values), "
        f"{args.steps} batches of {args.batch} rows, each phase"
    )
    names = sorted(results, key=lambda n: n != "before")  # before, then after
    labels = [f"before ({args.before_commit})" if n == "before" else n for n in names]
    print(f"  {'':54}" + "".join(f"{label:>18}" for label in labels))
    for key, label, fmt in ROWS:
        print(f"  {label:54}" + "".join(f"{fmt.format(results[n][key]):>18}" for n in names))


if __name__ == "__main__":
    main()
