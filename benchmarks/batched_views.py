r"""The batched views' time per training batch, this checkout against another commit.

``data.augment_batched`` makes both views of a batch in the training process (with
``data.device_resident``, the default on a CPU whose cores torch's threads take), so its
time adds to every step's. This times ``BatchedTwoViewDataset.batch`` at a profile's
size, here and in a git worktree of ``--base``, in alternating rounds (a fresh process
each, so the two never share a machine state they could drift apart in), and prints the
milliseconds per batch of each and the paired ratio round by round
(``siamlab.bench.measure.paired_ratio``). It also checks that both give the same views,
bit for bit, for the same keys.

    python benchmarks/batched_views.py --base 6e41db2                     # quick, ~2 min
    python benchmarks/batched_views.py --base 6e41db2 --profile cifar10 \
        --set data.dataset=npz --set data.root=../shared/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(profile: str, sets: list[str], batches: int) -> dict[str, object]:
    """Time ``batches`` batches of epoch 1 with the siamlab on ``sys.path``; hash the views."""
    import numpy as np

    from siamlab.config.study import StudyFile, expand_study
    from siamlab.data.batched import with_batched_views
    from siamlab.data.build import build_datasets
    from siamlab.train.device import configure_torch

    spec = expand_study(
        StudyFile(name="views"), profile, ["data.augment_batched=true", *sets], None
    )[0]
    cfg = spec.config
    configure_torch(cfg.train)
    views = with_batched_views(build_datasets(cfg.data, spec.seed), cfg.data, spec.seed, 1)
    views = views.train_views
    views.set_epoch(1)
    order = np.random.default_rng(0).permutation(len(views))
    b = cfg.train.batch_size
    ks = [order[(j * b) % len(order) :][:b].tolist() for j in range(batches + 1)]
    digest = hashlib.sha256()
    for v in views.batch(ks[0])[:2]:  # the first batch: warm-up, and the views' bits
        digest.update(v.numpy().tobytes())
    t0 = time.perf_counter()
    for k in ks[1:]:
        views.batch(k)
    ms = (time.perf_counter() - t0) / batches * 1e3
    return {"ms": ms, "views_sha256": digest.hexdigest(), "batch": b, "size": cfg.data.image_size}


def run_worker(root: Path, args: argparse.Namespace) -> dict[str, object]:
    """One worker process on the siamlab of ``root``."""
    cmd = [sys.executable, __file__, "--worker", "--profile", args.profile]
    cmd += ["--batches", str(args.batches)] + [f"--set={s}" for s in args.sets]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the worker on {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse the options; time both arms round by round, or be one worker."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=False, help="the commit to compare with")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per round")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.profile, args.sets, args.batches)))
        return
    if not args.base:
        parser.error("--base COMMIT is needed (the checkout is timed against it)")
    if args.rounds < 1 or args.batches < 1:
        parser.error("--rounds and --batches need to be at least 1")
    from siamlab.bench.measure import paired_ratio

    with tempfile.TemporaryDirectory(prefix="siamlab-views-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base), args.base],
            check=True,
        )
        try:
            ms: dict[str, list[float]] = {"here": [], "base": []}
            sha: dict[str, set[str]] = {"here": set(), "base": set()}
            for r in range(args.rounds):  # alternate which goes first
                for arm in ("here", "base") if r % 2 == 0 else ("base", "here"):
                    got = run_worker(REPO if arm == "here" else base, args)
                    ms[arm].append(float(got["ms"]))  # type: ignore[arg-type]
                    sha[arm].add(str(got["views_sha256"]))
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=True
            )
    ratio = paired_ratio(ms["base"], ms["here"])  # base time / our time: > 1 is faster here
    print(f"profile {args.profile}: batch {got['batch']}, {got['size']} px views, both views")
    for arm in ("base", "here"):
        median = statistics.median(ms[arm])
        print(f"  {arm:4s}: {median:7.2f} ms per batch (median of {args.rounds} rounds)")
    print(
        f"  speed-up here over base: {ratio.median:.2f}x "
        f"({100 * ratio.level:.0f}%: {ratio.low:.2f}-{ratio.high:.2f}, {ratio.rounds} rounds)"
    )
    same = sha["here"] == sha["base"] and len(sha["here"]) == 1
    print(f"  the same views bit for bit: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
