"""The parts of a siamlab run -- model, optimiser, lr schedule, batches -- for a loop of your own.

:func:`training_parts` builds them with the functions :func:`siamlab.run.assemble.build_run`
uses (the same seeded initial weights, parameter groups, schedule and keyed two-view
batches), and leaves the training step to the caller. A plain PyTorch loop over them,
watched by a :class:`~siamlab.monitor.CollapseMonitor`, sees what ``siamlab run`` of the
same config sees (README, "Collapse checks in your own training loop").
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from siamlab.config.schema import RunConfig
from siamlab.config.study import RunSpec, expand_study, read_study
from siamlab.errors import ConfigError
from siamlab.models.siamese import SiameseNet
from siamlab.run.assemble import RunLength, build_model, lr_schedule, run_length
from siamlab.run.training_data import TrainingData, build_training_data
from siamlab.train.config import TrainConfig
from siamlab.train.device import configure_torch, select_device
from siamlab.train.distributed import DistInfo
from siamlab.train.optim import create_optimizer
from siamlab.train.speed import resolve_speed, to_device


@dataclass(frozen=True)
class TrainingParts:
    """What one siamlab run trains, without its training step.

    Attributes:
        spec: the run: study, variant, seed, profile and resolved config.
        model: the Siamese network (``backbone``, ``projector``, ``predictor``;
            ``embed(x)`` -> h, z, p), initialised as ``siamlab run`` initialises it.
        optimizer: SGD or LARS with the run's ``encoder`` / ``predictor`` groups.
        set_lr: ``set_lr(step, epoch)`` sets the scheduled lr of the 0-based step and
            epoch (warm-up, cosine, a constant predictor lr) and returns the encoder's.
        device: where the model is and the batches go.
        data: the datasets, the keyed epoch sampler and the DataLoader.
        length: steps per epoch, epochs, all steps.
        train: the run's train config with ``precision`` and ``channels_last`` resolved for
            ``device`` (no ``auto``): the precision ``siamlab run`` trains this config in,
            and the layout of :attr:`model` and :meth:`batches`.
    """

    spec: RunSpec
    model: SiameseNet
    optimizer: torch.optim.Optimizer
    set_lr: Callable[[int, int], float]
    device: torch.device
    data: TrainingData
    length: RunLength
    train: TrainConfig

    @property
    def config(self) -> RunConfig:
        """The run's resolved config."""
        return self.spec.config

    @property
    def num_classes(self) -> int:
        """Classes of the training split (the kNN monitor's)."""
        return self.data.data.num_classes

    @property
    def train_eval(self) -> Dataset:
        """The training split under the test transform: items ``(image, label, index)``."""
        return self.data.data.train_eval

    @property
    def test_eval(self) -> Dataset:
        """The test split under the test transform: items ``(image, label, index)``."""
        return self.data.data.test_eval

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The two views ``(x1, x2)``, each (B, 3, S, S) on :attr:`device`, of 0-based ``epoch``.

        The views of image i depend only on (seed, epoch, i), the order only on (seed,
        epoch): the batches ``siamlab run`` trains on.
        """
        layout = self.train.channels_last is True
        for x1, x2, _, _ in self.data.batches(epoch):
            yield to_device(x1, self.device, layout), to_device(x2, self.device, layout)


def training_parts(
    study: str | Path,
    variant: str | None = None,
    *,
    seed: int | None = None,
    profile: str | None = None,
    sets: Sequence[str] = (),
) -> TrainingParts:
    """The parts of one run of a study file, as ``siamlab run STUDY --only VARIANT`` builds them.

    Applies ``train.threads`` and ``train.deterministic`` to torch, as ``siamlab run``
    does, and picks ``train.device``. One process (no torchrun); nothing is written. The
    step's own options (the precision in ``parts.train.precision``, ``train.compile``, a
    momentum target's EMA update) are the loop's to apply: a plain fp32 loop equals
    ``siamlab run`` of the config with ``train.precision=fp32``.

    Args:
        study: a study file (``studies/*.yaml``).
        variant: one of its variants; None for a study of one variant.
        seed: the run's seed; None = the study's first.
        profile: the scale (``quick``, ``cifar10``, ``imagenet``); None = the study's.
        sets: ``--set`` overrides, e.g. ``["train.epochs=3"]``.

    Raises:
        ConfigError: a bad study, variant or override; several variants and none chosen;
            eta targets (``objective.eta``), which are part of siamlab's step, not of
            these parts.
        DataError: the data is missing or malformed.
    """
    parsed = read_study(study)
    if variant is None and len(parsed.variants) > 1:
        raise ConfigError(
            f"{study} has {len(parsed.variants)} variants; choose one with variant=, "
            f"one of: {', '.join(parsed.variants)}"
        )
    only = [variant] if variant is not None else None
    seeds = [seed if seed is not None else parsed.seeds[0]]
    spec = expand_study(parsed, profile, list(sets), only, seeds)[0]
    return parts_of(spec)


def parts_of(spec: RunSpec) -> TrainingParts:
    """The :class:`TrainingParts` of ``spec`` (see :func:`training_parts`).

    Raises:
        ConfigError: ``objective.eta.mode`` is not ``off``.
    """
    cfg = spec.config
    if cfg.objective.eta.mode != "off":
        raise ConfigError(
            f"objective.eta.mode={cfg.objective.eta.mode}: eta targets are built inside "
            "siamlab's training step, not handed to a loop of your own; use siamlab run, "
            "or eta.mode: off"
        )
    configure_torch(cfg.train)
    device, dist = select_device(cfg.train.device), DistInfo()
    train = resolve_speed(cfg.train, device)  # precision / channels_last: no "auto" left
    data = build_training_data(cfg, spec.seed, dist, device)
    model = build_model(cfg, spec.seed, device, dist)
    if train.channels_last is True:  # as siamlab's step does (the batches follow, batches())
        model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(model, cfg.optim, cfg.train.batch_size, fused=False)  # a user loop
    length = run_length(cfg, data.steps_per_epoch)
    set_lr = lr_schedule(cfg, optimizer, length)
    return TrainingParts(spec, model, optimizer, set_lr, device, data, length, train)
