"""Shared test builders: a tiny real run on the bundled digits, a toy results study, threads."""

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from siamlab.config.study import RunSpec, StudyFile, expand_study
from siamlab.results.recorder import Recorder
from siamlab.results.store import open_study, write_run
from siamlab.run.checkpointer import SaveSchedule
from siamlab.run.train_run import train_run

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# batched views in the training process: a tiny run took twice as long waiting on the
# quick profile's one worker and its PIL path (tests of those paths set them: PIL_LOADER)
TINY_DATA_PATH = ["data.augment_batched=true", "data.num_workers=0"]
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
    "train.checkpoint_every_epochs=1",  # the quick profile's 10 would leave only the last
    "diagnostics.knn_k=10",
    *TINY_DATA_PATH,
]
# the quick profile's own data path, for the tests of killing and resuming a run the way
# a user's run is killed: PIL views made by one DataLoader worker
PIL_LOADER = ["data.augment_batched=false", "data.num_workers=1", "data.device_resident=false"]


def tiny_runs(
    tmp_path: Path,
    variants: dict | None = None,
    sets: list[str] | None = None,
    seeds: list[int] | None = None,
) -> list[RunSpec]:
    """Runs of a tiny study on digits writing under ``tmp_path``."""
    study = StudyFile(name="tiny", variants=variants or {"default": {}}, seeds=seeds or [0])
    return expand_study(study, sets=[*TINY, f"output.root={tmp_path}", *(sets or [])])


class Killed(Exception):
    """What :func:`kill_after_epoch` raises in place of the process dying."""


def kill_after_epoch(spec: RunSpec, epoch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train ``spec`` up to its checkpoint after 1-based ``epoch``, then stop as if killed."""
    original = SaveSchedule.after_epoch

    def killed(self: SaveSchedule, e: int, step: int, is_last: bool) -> None:
        original(self, e, step, is_last)
        if e == epoch:
            raise Killed

    monkeypatch.setattr(SaveSchedule, "after_epoch", killed)
    with pytest.raises(Killed):
        train_run(spec, progress=False)
    monkeypatch.setattr(SaveSchedule, "after_epoch", original)


@pytest.fixture
def tiny(tmp_path: Path) -> RunSpec:
    """One tiny run on digits (2 epochs of 4 steps)."""
    return tiny_runs(tmp_path)[0]


def resume_after_kill(spec: RunSpec, epoch: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``spec``, kill it right after its checkpoint of ``epoch``, resume it; the outcome."""
    kill_after_epoch(spec, epoch, monkeypatch)
    return train_run(spec, progress=False)


class StepRecorder:
    """A Trainer's monitor and saver in tests: keeps ``record(view)`` of each step."""

    def __init__(self, record=lambda view: view) -> None:
        self.record, self.steps = record, []

    def on_step_end(self, view) -> None:
        self.steps.append(self.record(view))

    def on_epoch_end(self, view) -> None:
        pass

    def after_step(self, step) -> None:
        pass

    def after_epoch(self, epoch, step, is_last) -> None:
        pass


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module's tests (steady on a shared 2-core machine), restored after.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def negative_cosine_grad(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Closed-form gradient w.r.t. ``a`` of the batch mean of ``-cos(a_i, b_i)``, shape (B, D).

    d/da (-a.b / (|a| |b|)) = -(b_hat - (a_hat . b_hat) a_hat) / |a|, divided by B for the mean.
    """
    a, b = a.detach().double(), b.detach().double()
    norm = a.norm(dim=1, keepdim=True)  # (B, 1)
    a_hat, b_hat = a / norm, b / b.norm(dim=1, keepdim=True)  # (B, D)
    cos = (a_hat * b_hat).sum(1, keepdim=True)  # (B, 1)
    return -(b_hat - cos * a_hat) / norm / a.shape[0]


# A toy study of two variants x three seeds, written as siamlab writes results (compare, plots).
TOY_D, TOY_STEPS_PER_EPOCH, TOY_EPOCHS = 8, 4, 5
TOY_CONFIG = {"model": {"dim": TOY_D}, "optim": {"base_lr": 0.1}, "train": {"epochs": TOY_EPOCHS}}


def toy_knn(variant: str, seed: int, epoch: int) -> float:
    """kNN top-1 of the toy run (variant, seed) at ``epoch``: good rises 5x faster."""
    return (0.1 if variant == "good" else 0.02) * epoch + 0.01 * seed


def toy_epoch_loss(variant: str, seed: int, epoch: int) -> float:
    """Epoch loss of the toy run: good dips to its best at epoch 3 and ends 0.1 above it."""
    base = -0.9 + 0.05 * abs(epoch - 3) if variant == "good" else -1 + 0.1 / epoch
    return base - 0.01 * seed


def toy_verdict(variant: str, seed: int, epoch: int) -> str:
    """Per-epoch state of the toy run: bad collapses from epoch 2; good is healthy, but
    seed 2 turns unstable from epoch 3."""
    if variant == "good":
        return "healthy" if seed < 2 or epoch < 3 else "unstable"
    return "healthy" if epoch == 1 else "collapsed"


def toy_run_verdict(variant: str, seed: int, epochs: int) -> dict[str, str | int]:
    """The run verdict attrs of the toy run after ``epochs`` (3 evaluations enter a state).

    good seeds 0, 1: healthy since 1; good seed 2: unstable since 3 (entered at 5); bad:
    collapsed since 2, entered at 4, so the running bad seed 2 (2 epochs) is provisional.
    """
    if variant == "good":
        verdict, onset = ("healthy", 1) if seed < 2 else ("unstable", 3)
    else:
        verdict, onset = "collapsed", 2
    provisional = epochs - onset + 1 < 3
    evidence = f"toy {variant}/seed{seed} {verdict}; since epoch {onset}"
    return {
        "verdict": verdict,
        "verdict_onset_epoch": onset,
        "verdict_evidence": evidence,
        "verdict_provisional": int(provisional),
        "verdict_collapsed_residual_norm": 0.1,
        "verdict_dimensional_erank_fraction": 0.05,
        "verdict_partial_residual_norm": 0.8,
        "verdict_partial_erank_fraction": 0.3,
        "verdict_partial_residual_std": 0.9,
    }


def toy_centre_norm(variant: str, branch: str, epoch: int) -> float:
    """||E z/|z|||: good stays near 0.1; bad's centre grows to ~1 (collapse); p, h below z."""
    shrink = {"z": 1.0, "p": 0.9, "h": 0.8}[branch]
    return shrink * (0.1 if variant == "good" else 1 - 0.5**epoch)


TOY_STAGE_WIDTHS = (2, 4, 8)


def toy_stages(variant: str, epoch: int) -> dict[str, np.ndarray]:
    """Per-stage values: good keeps half of each stage's width; bad's later stages lose rank."""
    widths = np.array(TOY_STAGE_WIDTHS, dtype=float)
    shrink = np.ones(3) if variant == "good" else 1.0 / (1.0 + np.arange(3) * epoch)
    spectra = np.full((3, TOY_STAGE_WIDTHS[-1]), np.nan)
    for k, w in enumerate(TOY_STAGE_WIDTHS):
        spectra[k, :w] = shrink[k] ** np.arange(w) / (1 + np.arange(w))
    rank = 0.5 * widths * shrink
    return {"stage_rankme": rank, "stage_erank": 0.9 * rank, "stage_std": 0.1 * shrink,
            "stage_spectrum": spectra}  # fmt: skip


def make_run(
    root: Path,
    variant: str,
    seed: int,
    epochs: int = TOY_EPOCHS,
    config: dict | None = None,
    status: str | None = None,
    run_verdict: bool = True,
) -> None:
    """Write the toy run ``root/toy/variant/seed{seed}`` (running if ``epochs < TOY_EPOCHS``).

    ``run_verdict=False`` writes a file as siamlab did before the run verdict (per-epoch
    ``verdict`` states only).
    """
    rec = Recorder()
    scale = 1.0 if variant == "good" else 0.1
    for step in range(1, epochs * TOY_STEPS_PER_EPOCH + 1):
        rec.add(step, {"loss": -step / 40 - 0.01 * seed, "lr": 0.1, "z_std_train": 0.3})
    for e in range(1, epochs + 1):
        centred = {}
        for x in ("z", "p", "h"):
            c = toy_centre_norm(variant, x, e)
            centred |= {
                f"{x}_centre_norm": c,
                f"{x}_residual_norm": math.sqrt(1 - c**2),
                f"{x}_residual_std": 1.0 if variant == "good" else 0.5,
                f"{x}_residual_erank_fraction": 0.5 if variant == "good" else 0.5 / e,
            }
        rec.add(
            e,
            {
                **centred,
                "epoch_loss": toy_epoch_loss(variant, seed, e),
                "z_std_eval": scale / math.sqrt(TOY_D) + 0.001 * seed,
                "z_channel_std_eval": scale * np.linspace(0.5, 1.5, TOY_D) / math.sqrt(TOY_D),
                "knn_top1": toy_knn(variant, seed, e),
                "images_per_second": 100.0,
                **toy_stages(variant, e),
            },
        )
    status = status or ("finished" if epochs == TOY_EPOCHS else "running")
    cfg = yaml.safe_dump(config or TOY_CONFIG)
    attrs = {
        "study": "toy",
        "variant": variant,
        "seed": seed,
        "status": status,
        "config": cfg,
        "dim": TOY_D,
        "std_reference": 1 / math.sqrt(TOY_D),
        **(toy_run_verdict(variant, seed, epochs) if run_verdict else {}),
    }
    ds = rec.to_dataset(attrs)
    epochs_ix = ds["epoch"].values
    ds["verdict"] = xr.DataArray(
        np.array([toy_verdict(variant, seed, int(e)) for e in epochs_ix], dtype=object),
        dims="epoch",
        attrs={"long_name": "collapse verdict", "units": "1"},
    )
    k = np.arange(TOY_D)
    spectra = np.stack([scale ** (1 + k / 2) / (1 + k) for _ in epochs_ix])
    ds["z_spectrum"] = xr.DataArray(
        spectra,
        dims=("epoch", "component"),
        attrs={"long_name": "eigenvalues of cov(z)", "units": "1"},
    )
    ds["eta_drift"] = xr.DataArray(
        0.5 / epochs_ix, dims="epoch", attrs={"long_name": "eta drift", "units": "1"}
    )
    if status == "finished":  # as siamlab eval linear records it: one number per run
        ds["eval_linear_top1"] = xr.DataArray(0.6 + 0.01 * seed, attrs={"units": "1"})
    write_run(root / "toy" / variant / f"seed{seed}", ds)


def build_study(root: Path) -> Path:
    """good: 3 finished seeds; bad: 2 finished seeds + seed 2 running at epoch 2."""
    for seed in range(3):
        make_run(root, "good", seed)
    make_run(root, "bad", 0)
    make_run(root, "bad", 1)
    make_run(root, "bad", 2, epochs=2)
    return root / "toy"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy study's directory (:func:`build_study`), once per test module."""
    return build_study(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def study(study_dir: Path) -> xr.Dataset:
    """The toy study as ``open_study`` reads it."""
    return open_study(study_dir)
