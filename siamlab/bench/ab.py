"""What the A/B scripts of ``benchmarks/`` share: their options and a prepared run.

Each script (``nan_fill.py``, ``fused_sgd.py``) times arms of siamlab's training step on
the bench's pooled batches (:mod:`siamlab.bench.runner`), side by side in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator

import torch

from siamlab.bench.runner import in_folder, prepare
from siamlab.config.study import RunSpec, StudyFile, expand_study
from siamlab.data.build import DataBundle
from siamlab.train.loop import Batch


def ab_parser(doc: str, steps: int) -> argparse.ArgumentParser:
    """``--profile``, ``--steps`` (default ``steps``), ``--block`` and ``--set``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per arm")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value")
    return parser


@contextlib.contextmanager
def prepared_run(
    name: str, profile: str, sets: list[str]
) -> Iterator[tuple[RunSpec, torch.device, DataBundle, list[Batch]]]:
    """A one-variant study's run, prepared as the bench prepares it, writing to a temp folder.

    Yields:
        The run (its "auto" speed options resolved), its device, its data and the arms'
        pooled batches.
    """
    spec = expand_study(StudyFile(name=name), profile, sets, None)[0]
    spec, device, data, _, pool = prepare(spec)
    with tempfile.TemporaryDirectory(prefix=f"siamlab-{name}-") as tmp:
        yield in_folder(spec, tmp), device, data, pool
