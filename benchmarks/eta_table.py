"""Throughput and memory of the moving-average eta table at ImageNet size.

Usage: python benchmarks/eta_table.py [--rows 1281167] [--dim 2048] [--dir /tmp] [--steps 200]

Creates a rows x dim float16 memmap (5.2 GB at ImageNet size; the file is sparse
until written), then times the moving-average update of random batches of 512 rows
(read, blend, write) as training does, and reports rows/s and the process's memory:
RssAnon (private memory: what the table costs the process) and RssFile (page-cache
pages of the file mapped in; reclaimable by the kernel).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from siamlab.eta.moving_average import MovingAverageTargets
from siamlab.eta.table import EtaTable
from siamlab.models.siamese import SiameseOutput


def _memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def main() -> None:
    """Run the benchmark and print one line per storage."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_281_167)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dir", default=None, help="folder for the memmap (default: a temp dir)")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = _memory_mb()
        table = EtaTable(args.rows, args.dim, "float16", "memmap", Path(tmp))
        targets = MovingAverageTargets(table, momentum=0.8)
        z = torch.randn(args.batch, args.dim)
        out = SiameseOutput(z, z, z, z, z, z)
        t0 = time.perf_counter()
        for step in range(args.steps):
            idx = torch.randperm(args.rows)[: args.batch]
            targets.apply(out, idx, step)
        seconds = time.perf_counter() - t0
        mem = _memory_mb()
        size_gb = args.rows * args.dim * 2 / 1e9
        print(f"memmap float16 table {args.rows} x {args.dim} ({size_gb:.1f} GB on disk)")
        print(
            f"  update throughput: {args.steps * args.batch / seconds:,.0f} rows/s "
            f"({args.steps} batches of {args.batch} random rows, read + blend + write)"
        )
        print(
            f"  memory: RssAnon {mem['RssAnon'] - start['RssAnon']:+.0f} MB, "
            f"RssFile {mem['RssFile']:.0f} MB (reclaimable page cache), peak RSS "
            f"{mem['VmHWM']:.0f} MB"
        )
        t0 = time.perf_counter()
        table.state_dict()
        print(f"  checkpoint snapshot (copy of the table): {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
