"""A run's ``metrics.nc``: the recorder's values with the run's provenance attrs.

Under torchrun only rank 0 writes. The time the run was first created is part of the
run's checkpointed state (a resumed run keeps it).
"""

import math
from pathlib import Path
from typing import Any

import torch

from siamlab.config.study import RunSpec
from siamlab.diagnostics.verdict import verdict_attrs
from siamlab.diagnostics.verdict_rule import RunVerdict
from siamlab.provenance import config_yaml, now, versions
from siamlab.results.recorder import Recorder
from siamlab.results.store import write_run
from siamlab.train.config import TrainConfig
from siamlab.train.distributed import DistInfo


class ResultsFile:
    """Writes ``<run dir>/metrics.nc`` from the recorder.

    Args:
        spec: the run.
        directory: the run's folder.
        recorder: the values recorded so far.
        dist: this process's place in the job (only rank 0 writes).
        speed: the run's train config with its speed options resolved for the device
            (:func:`~siamlab.train.speed.resolve_speed`): the ``precision`` and
            ``channels_last`` attrs say what ran, where the config may say ``auto``.
        device: where the run trains (the ``device`` attr; with ``threads``, the CPU
            threads, it says what a CPU run's float rounding depended on).
    """

    def __init__(
        self,
        spec: RunSpec,
        directory: Path,
        recorder: Recorder,
        dist: DistInfo,
        speed: TrainConfig,
        device: torch.device,
    ) -> None:
        self.spec, self.directory, self.recorder, self.dist = spec, directory, recorder, dist
        self.speed, self.device = speed, device
        self.created = now()

    def run_verdict(self) -> RunVerdict:
        """The run's verdict as of its last evaluated epoch (empty before the first)."""
        last = self.recorder.last
        verdict, onset, evidence = (
            last(k) for k in ("run_verdict", "run_verdict_onset_epoch", "run_verdict_evidence")
        )
        if not isinstance(verdict, str) or not verdict:
            return RunVerdict()
        provisional = last("run_verdict_provisional")
        return RunVerdict(
            verdict,
            int(onset) if isinstance(onset, float) and math.isfinite(onset) else 0,
            evidence if isinstance(evidence, str) else "",
            provisional != 0.0,
        )

    def attrs(self, status: str, diverged_step: int | None = None) -> dict[str, Any]:
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
            "precision": str(self.speed.precision),
            "channels_last": int(self.speed.channels_last is True),
            "device": self.device.type,
            "threads": torch.get_num_threads(),
            **verdict_attrs(self.run_verdict(), status, cfg.diagnostics.verdict, diverged_step),
            "created": self.created,
            "updated": now(),
            **versions(),
        }

    def write(self, status: str, **extra: Any) -> None:
        """Rewrite ``metrics.nc`` with ``status`` and ``extra`` attrs (rank 0 only)."""
        if self.dist.is_main:
            attrs = self.attrs(status, extra.get("diverged_step"))
            write_run(self.directory, self.recorder.to_dataset({**attrs, **extra}))

    def state_dict(self) -> str:
        """The run's creation time (a checkpoint's ``created``)."""
        return self.created

    def load_state_dict(self, state: str) -> None:
        """Keep the creation time of the checkpointed run."""
        self.created = state
