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
        data_fingerprint: which images it trains on (the ``data_fingerprint`` attr;
            :mod:`siamlab.data.fingerprint`).
    """

    def __init__(
        self,
        spec: RunSpec,
        directory: Path,
        recorder: Recorder,
        dist: DistInfo,
        speed: TrainConfig,
        device: torch.device,
        data_fingerprint: str = "",
    ) -> None:
        self.spec, self.directory, self.recorder, self.dist = spec, directory, recorder, dist
        self.speed, self.device, self.data_fingerprint = speed, device, data_fingerprint
        self.created = now()
        # (first 1-based step, CPU threads) of each count the run trained on, in order;
        # spans_known: False for a checkpoint from before them (its creation time alone)
        self.thread_spans: list[tuple[int, int]] = []
        self.spans_known = True

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
            "data_fingerprint": self.data_fingerprint,
            "dim": cfg.model.dim,
            "std_reference": 1 / math.sqrt(cfg.model.dim),
            "world_size": self.dist.world_size,
            "precision": str(self.speed.precision),
            "channels_last": int(self.speed.channels_last is True),
            "device": self.device.type,
            "threads": torch.get_num_threads(),
            **self._thread_history(),
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

    def trains_from(self, step: int, earlier: int | None = None) -> None:
        """This process trains the run on from 1-based ``step`` on its CPU threads.

        A resume on another count (a set ``train.threads``; siamlab.train.device.
        resume_threads warns) starts a new span, which ``threads_history`` records.

        Args:
            step: the first step this process trains.
            earlier: the checkpoint's count, for a checkpoint without spans (before
                2026-12-07): the run trained on it from step 1. Not read otherwise (a
                run started on a GPU and resumed on a CPU has no CPU span before).
        """
        if self.device.type != "cpu":
            return
        if not self.spans_known and earlier is not None and step > 1:
            self.thread_spans.append((1, earlier))
        count = torch.get_num_threads()
        if not self.thread_spans or self.thread_spans[-1][1] != count:
            self.thread_spans.append((step, count))

    def _thread_history(self) -> dict[str, str]:
        """``threads_history`` attr, only for a run trained on more than one count."""
        if len(self.thread_spans) < 2:
            return {}
        spans = ", ".join(f"{n} from step {s}" for s, n in self.thread_spans)
        return {"threads_history": spans}

    def state_dict(self) -> dict[str, Any]:
        """The run's creation time and its thread spans (a checkpoint's ``created``)."""
        return {"created": self.created, "thread_spans": list(self.thread_spans)}

    def load_state_dict(self, state: str | dict[str, Any]) -> None:
        """Keep the creation time and thread spans of the checkpointed run.

        A checkpoint from before 2026-12-07 holds the creation time alone.
        """
        if isinstance(state, str):
            self.created, self.spans_known = state, False
            return
        self.created = state["created"]
        self.thread_spans = [(int(s), int(n)) for s, n in state["thread_spans"]]
