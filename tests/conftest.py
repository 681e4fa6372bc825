"""Shared fixtures: a tiny but real run configuration on the bundled digits."""

from pathlib import Path

import pytest

from siamlab.config.study import RunSpec, StudyFile, expand_study

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY = [
    "data.image_size=8",
    "data.train_limit=256",
    "data.test_limit=128",
    "model.width=8",
    "model.dim=64",
    "model.projector.hidden_dim=64",
    "train.batch_size=64",
    "train.epochs=2",
    "train.threads=1",
    "diagnostics.knn_k=10",
]


def tiny_runs(
    tmp_path: Path,
    variants: dict | None = None,
    sets: list[str] | None = None,
    seeds: list[int] | None = None,
) -> list[RunSpec]:
    """Runs of a tiny study on digits writing under ``tmp_path``."""
    study = StudyFile(name="tiny", variants=variants or {"default": {}}, seeds=seeds or [0])
    return expand_study(study, sets=[*TINY, f"output.root={tmp_path}", *(sets or [])])


@pytest.fixture
def tiny(tmp_path: Path) -> RunSpec:
    """One tiny run on digits (2 epochs of 4 steps)."""
    return tiny_runs(tmp_path)[0]
