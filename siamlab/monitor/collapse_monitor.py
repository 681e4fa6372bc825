"""Collapse diagnostics for any training loop: siamlab's own hooks, fed by the caller.

Researchers who train with another library or a loop of their own hand the monitor each
step's outputs and, each epoch, two image sets to embed. It runs the hooks that
``siamlab run`` runs (:mod:`siamlab.diagnostics.registry`), through the same
:class:`~siamlab.diagnostics.monitor.Monitor`, probe sets and eval-mode passes, so its
values, its run verdict (:mod:`siamlab.diagnostics.verdict_rule`) and its xarray Dataset
(:mod:`siamlab.results.schema`) are those of a siamlab run of the same training.
"""

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from siamlab.diagnostics.build import build_hooks
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.hooks import HookContext, Value, Values
from siamlab.diagnostics.monitor import Monitor, Sink
from siamlab.diagnostics.probe import EmbedFn, EvalFeatures, ProbeCache, has_parameters
from siamlab.diagnostics.verdict import VerdictJudge, verdict_attrs
from siamlab.diagnostics.verdict_rule import RunVerdict
from siamlab.errors import ConfigError
from siamlab.models.siamese import SiameseOutput
from siamlab.objectives import ObjectiveConfig, simsiam_loss
from siamlab.provenance import now, versions
from siamlab.reporting.assemble import PROBE_BATCH, probe_sets
from siamlab.reporting.recorder_sink import RecorderSink
from siamlab.reporting.tensorboard import TensorBoardSink
from siamlab.results.recorder import Recorder
from siamlab.train.step import detached
from siamlab.train.views import EpochView, step_view

Tensor = torch.Tensor


class _Latest:
    """A sink that keeps the values of the latest step and epoch (what the calls return)."""

    def __init__(self) -> None:
        self.values: dict[str, Values] = {"step": {}, "epoch": {}}

    def write(self, scope: str, index: int, values: Mapping[str, Value]) -> None:
        self.values[scope] = dict(values)

    def close(self) -> None:
        """Nothing to release."""


class CollapseMonitor:
    """The collapse diagnostics and verdict of ``siamlab run``, for a training loop of your own.

    Call :meth:`step` after every optimiser step and :meth:`epoch` after every epoch;
    read :attr:`verdict` and :meth:`to_dataset`. Nothing the monitor does reaches the
    caller's autograd graph: it reads detached tensors, and the epoch's passes run
    under ``no_grad`` in eval mode with every module's train/eval flag restored.

    Args:
        model: the network. Its eval-mode passes embed the epoch's image sets; the
            gradient norms read the ``.grad`` of its ``backbone``, ``projector`` and
            ``predictor`` (see ``parts``).
        epochs: the planned epochs (``auto`` epoch schedules and the last epoch).
        num_classes: classes of the labels, for the kNN monitor; None leaves it out.
        diagnostics: a ``diagnostics`` config (or its dict): hooks, schedules, verdict
            thresholds; None = siamlab's defaults.
        embed: ``x (B, 3, H, W) -> (h, z, p)``, the backbone features, projections and
            predictions of a batch; default ``model.embed`` (a siamlab model).
        parts: ``backbone`` / ``projector`` / ``predictor`` -> the module, for a model
            whose parts have other names; default the attributes of ``model``. A part
            that is absent has ``grad_norm`` NaN; a predictor without parameters skips
            the predictor alignment.
        optimizer: where :meth:`step` reads the lr (its first group) when given none.
        log_dir: write TensorBoard event files there, as ``siamlab run`` does under ``tb/``.

    Raises:
        ConfigError: ``diagnostics`` is not a valid diagnostics config.
    """

    def __init__(
        self,
        model: nn.Module,
        epochs: int,
        num_classes: int | None = None,
        diagnostics: DiagnosticsConfig | Mapping[str, Any] | None = None,
        *,
        embed: EmbedFn | None = None,
        parts: Mapping[str, nn.Module] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        self.cfg = _diagnostics(diagnostics)
        self.epochs, self.model, self.optimizer = epochs, model, optimizer
        self._parts: nn.Module = nn.ModuleDict(dict(parts)) if parts is not None else model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = device
        self._features = EvalFeatures(model, device, embed)
        predictor = getattr(self._parts, "predictor", None)
        names = [n for n in self.cfg.hooks if num_classes is not None or n != "knn"]
        ctx = HookContext(self.cfg, epochs, num_classes or 0, False, has_parameters(predictor))
        self.recorder, self._latest = Recorder(), _Latest()
        sinks: list[Sink] = [RecorderSink(self.recorder), self._latest]
        if log_dir is not None:
            sinks.append(TensorBoardSink(log_dir, purge_step=1))
        self._probes: ProbeCache | None = None
        self._monitor = Monitor(build_hooks(names, ctx), sinks, self._probe_cache)
        self.step_count, self.epoch_count, self.dim = 0, 0, 0
        self._images, self._t0, self.created = 0, time.perf_counter(), now()

    def _probe_cache(self) -> ProbeCache:
        assert self._probes is not None, "set by epoch() before the monitor's epoch end"
        return self._probes

    def step(
        self,
        z1: Tensor,
        z2: Tensor,
        p1: Tensor,
        p2: Tensor,
        loss: Tensor | float | None = None,
        *,
        h1: Tensor | None = None,
        h2: Tensor | None = None,
        lr: float | None = None,
    ) -> Values:
        """Record one SGD step from its training-mode outputs (call after the optimiser step).

        Args:
            z1: projections of view 1 (B, d).
            z2: projections of view 2 (B, d).
            p1: predictions of view 1 (B, d).
            p2: predictions of view 2 (B, d).
            loss: the step's loss; None = the paper's symmetric negative cosine (Eq. 4)
                of ``p`` and ``z``.
            h1: backbone features of view 1 (B, C), for the two views' branch cosine
                (not recorded without ``h1`` and ``h2``).
            h2: backbone features of view 2 (B, C).
            lr: the encoder's lr; None = the optimiser's first group's, else NaN.

        Returns:
            The step's values (``loss``, ``z_std_train``, ``pz_cosine_train``, ...).
        """
        out = SiameseOutput(h1, h2, z1, z2, p1, p2)  # type: ignore[arg-type]  # h may be None
        if loss is None:
            value = float(simsiam_loss(detached(out), ObjectiveConfig()))
        else:
            value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if lr is None:
            lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else math.nan
        self.step_count += 1
        self._images += z1.shape[0]
        self.dim = z1.shape[1]
        view = step_view(
            self.step_count, self.epoch_count, value, lr, out, z1.shape[0], self._parts, {}
        )
        self._latest.values["step"] = {}
        self._monitor.on_step_end(view)
        return self._latest.values["step"]

    def epoch(self, train: Dataset, test: Dataset) -> Values:
        """Record the end of an epoch: embed the image sets in eval mode, run the epoch hooks.

        Args:
            train: training images under the test transform, items ``(image, label, ...)``:
                the kNN bank and (a seeded subset of ``diagnostics.probe_size``) the probe
                set of the spectra and the predictor alignment.
            test: held-out images, items ``(image, label, ...)``: the kNN queries, the
                eval-mode std and the centred geometry the verdict judges.

        Returns:
            The epoch's values (``z_std_eval``, ``knn_top1``, ``verdict``, ...); a hook
            whose schedule skips this epoch adds none.
        """
        self.epoch_count += 1
        sets = probe_sets(train, test, self.cfg)
        self._probes = ProbeCache(self._features, sets, PROBE_BATCH)
        seconds = time.perf_counter() - self._t0
        last = self.epoch_count >= self.epochs
        view = EpochView(self.epoch_count, self.step_count, seconds, self._images, last)
        self._latest.values["epoch"] = {}
        try:
            self._monitor.on_epoch_end(view)
        finally:
            self._probes, self._images, self._t0 = None, 0, time.perf_counter()
        return self._latest.values["epoch"]

    @property
    def verdict(self) -> RunVerdict:
        """The run's verdict so far: state, onset epoch, evidence, provisional."""
        judge = next((h for h in self._monitor.hooks if isinstance(h, VerdictJudge)), None)
        return judge.run if judge is not None else RunVerdict()

    def to_dataset(self, **attrs: Any) -> xr.Dataset:
        """Everything recorded, as a run's ``metrics.nc`` of siamlab: same variables and attrs.

        Args:
            **attrs: further Dataset attrs (e.g. ``study``, ``variant``, ``seed``,
                ``config``), which override the monitor's.
        """
        status = "finished" if self.epoch_count >= self.epochs else "running"
        dim = self.dim or math.nan
        own = {
            "status": status,
            "dim": self.dim,
            "std_reference": 1 / math.sqrt(dim),
            "world_size": 1,
            "device": self.device.type,  # with threads: what a CPU run's rounding depended on
            "threads": torch.get_num_threads(),  # the loop's, as it writes the file
            "source": "siamlab.monitor.CollapseMonitor",
            **verdict_attrs(self.verdict, status, self.cfg.verdict),
            "created": self.created,
            "updated": now(),
            **versions(),
        }
        return self.recorder.to_dataset({**own, **attrs})

    def state_dict(self) -> dict[str, Any]:
        """Everything the monitor has seen, for the checkpoint of a loop that resumes.

        Restored by :meth:`load_state_dict` into a monitor built with the same arguments,
        it continues as if never interrupted, also in the middle of an epoch.
        """
        return {
            "hooks": self._monitor.state_dict(),
            "recorder": self.recorder.state_dict(),
            "counts": (self.step_count, self.epoch_count, self.dim, self._images),
            "created": self.created,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._monitor.load_state_dict(state["hooks"])
        self.recorder.load_state_dict(state["recorder"])
        self.step_count, self.epoch_count, self.dim, self._images = state["counts"]
        self.created = state["created"]

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        self._monitor.close()


def _diagnostics(cfg: DiagnosticsConfig | Mapping[str, Any] | None) -> DiagnosticsConfig:
    """``cfg`` as a :class:`DiagnosticsConfig` (None = the defaults).

    Raises:
        ConfigError: an unknown key or a bad value, with what the config expects.
    """
    if isinstance(cfg, DiagnosticsConfig):
        return cfg
    try:
        return DiagnosticsConfig.model_validate(dict(cfg or {}))
    except ValueError as exc:
        raise ConfigError(f"invalid diagnostics config for CollapseMonitor: {exc}") from None
