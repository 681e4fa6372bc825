"""The state of one run: model, optimiser, recorder, targets; its checkpoints and results.

Under torchrun only rank 0 writes; every rank reads the checkpoint to resume.
"""

import math
from typing import Any, cast

import torch
from torch import nn

from siamlab.atomic import atomic_write
from siamlab.config.study import RunSpec
from siamlab.diagnostics.verdict import verdict_attrs
from siamlab.errors import ResultsError
from siamlab.eta.provider import TargetProvider
from siamlab.models.siamese import SiameseNet, create_model
from siamlab.provenance import config_diff, config_yaml, now, versions
from siamlab.results.recorder import Recorder
from siamlab.results.store import write_run
from siamlab.train.checkpoint import load_checkpoint, save_checkpoint
from siamlab.train.distributed import DistInfo, barrier, convert_batchnorm
from siamlab.train.optim import create_optimizer
from siamlab.train.views import EpochView, StepView


class RunState:
    """Everything a run's future depends on, and how it is saved and restored.

    Args:
        spec: the run.
        device: where the model lives.
        dist: this process's place in the job.
    """

    def __init__(self, spec: RunSpec, device: torch.device, dist: DistInfo) -> None:
        cfg = spec.config
        self.spec, self.device, self.dist = spec, device, dist
        self.dir = spec.directory()
        torch.manual_seed(spec.seed)  # the same initial weights on every rank
        model: nn.Module = create_model(cfg.model)
        if dist.world_size > 1:  # SyncBN on the whole model, heads included (NOTES.md)
            model = convert_batchnorm(model, device.type)
        self.model = cast(SiameseNet, model.to(device))  # BN swapped in place
        self.optimizer = create_optimizer(self.model, cfg.optim, cfg.train.batch_size)
        self.recorder = Recorder()
        self.targets: TargetProvider | None = None
        self.monitor: Any = None  # the diagnostics Monitor: its hooks' state is checkpointed
        self.loaded_monitor_state: dict[str, Any] | None = None
        self.created = now()

    def attrs(self, status: str) -> dict[str, Any]:
        """Provenance attrs of the results file."""
        cfg = self.spec.config
        return {
            "study": self.spec.study,
            "variant": self.spec.variant,
            "seed": self.spec.seed,
            "profile": self.spec.profile,
            "paper": self.spec.paper,
            "status": status,
            "config": config_yaml(cfg),
            "dim": cfg.model.dim,
            "std_reference": 1 / math.sqrt(cfg.model.dim),
            "world_size": self.dist.world_size,
            **verdict_attrs(self.recorder.last("verdict"), status, cfg.diagnostics.verdict),
            "created": self.created,
            "updated": now(),
            **versions(),
        }

    def save(self, step: int, status: str) -> None:
        """Checkpoint, then the results that match it (rank 0; the others wait)."""
        targets, provider = None, self.targets
        if provider is not None:
            if getattr(provider, "per_rank_state", False) and self.dist.world_size > 1:
                path = self.dir / "checkpoints" / f"targets-rank{self.dist.rank}.pt"
                atomic_write(path, lambda tmp: torch.save(provider.state_dict(), tmp))
            elif self.dist.is_main:
                targets = provider.state_dict()
        if self.dist.is_main:
            state = {
                "step": step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "recorder": self.recorder.state_dict(),
                "config": self.spec.config.model_dump(mode="json"),
                "created": self.created,
                "rng_cpu": torch.get_rng_state(),
                "targets": targets,
                "monitor": self.monitor.state_dict() if self.monitor is not None else None,
            }
            save_checkpoint(self.dir / "checkpoints", state)
            self.write_results(status)
        barrier()

    def write_results(self, status: str, **extra: Any) -> None:
        """Rewrite ``metrics.nc`` from the recorder (rank 0 only)."""
        if self.dist.is_main:
            write_run(self.dir, self.recorder.to_dataset({**self.attrs(status), **extra}))

    def resume(self) -> int:
        """Load the checkpoint if there is one; return its global step (0 without one)."""
        state = load_checkpoint(self.dir / "checkpoints")
        if state is None:
            return 0
        current = self.spec.config.model_dump(mode="json")
        diffs = [d for d in config_diff(state["config"], current) if not d.startswith("output.")]
        if diffs:
            raise ResultsError(
                f"{self.dir} holds a checkpoint of a different config; refusing to resume. "
                "Differences:\n  "
                + "\n  ".join(diffs)
                + "\nDelete the folder to start over, or change output.root."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.recorder.load_state_dict(state["recorder"])
        torch.set_rng_state(state["rng_cpu"])
        if self.targets is not None:
            if getattr(self.targets, "per_rank_state", False) and self.dist.world_size > 1:
                path = self.dir / "checkpoints" / f"targets-rank{self.dist.rank}.pt"
                self.targets.load_state_dict(torch.load(path, weights_only=False))
            else:
                self.targets.load_state_dict(state["targets"])
        self.loaded_monitor_state = state.get("monitor")
        self.created = state["created"]
        return int(state["step"])


class Checkpointing:
    """Saves the checkpoint, then the matching results.

    After an epoch's diagnostics, and every N steps inside an epoch if asked.
    """

    def __init__(self, run: RunState, every_epochs: int, every_steps: int | None, spe: int) -> None:
        self.run, self.every_epochs, self.every_steps, self.spe = (
            run,
            every_epochs,
            every_steps,
            spe,
        )

    def on_step_end(self, view: StepView) -> None:
        # a step that ends an epoch is saved after the epoch's diagnostics instead
        if self.every_steps and view.step % self.every_steps == 0 and view.step % self.spe:
            self.run.save(view.step, "running")

    def on_epoch_end(self, view: EpochView) -> None:
        if view.epoch % self.every_epochs == 0 or view.is_last:
            self.run.save(view.step, "finished" if view.is_last else "running")
