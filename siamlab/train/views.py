"""Read-only views of training handed to observers (diagnostics, checkpointing).

A view holds numbers and detached tensors only, never the live ``nn.Module``: an observer
cannot change the parameters, buffers or gradients it reports on. The per-step gradients
are detached aliases of each part's ``.grad`` (no copy; read them, do not write them).
Eval-mode features for epoch-level observers come from
:class:`~siamlab.diagnostics.probe.EvalFeatures`, built once by the run assembly.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from siamlab.models.siamese import SiameseOutput

MODULES: tuple[str, ...] = ("backbone", "projector", "predictor")  # parts of a SiameseNet

Gradients = Mapping[str, tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class StepView:
    """What observers see after an SGD step (all tensors detached).

    Attributes:
        step: 1-based global step just completed.
        epoch: 0-based epoch in progress.
        loss: the global batch's loss.
        lr: the learning rate used.
        output: the step's h/z/p (and targets), detached.
        batch_size: this process's batch.
        gradients: top-level part (``backbone``, ``projector``, ``predictor``) -> the
            detached ``.grad`` of its parameters after the optimiser step; an empty tuple
            for a part without parameters or without gradient (frozen).
        target_stats: statistics of the eta provider (paper Sec. 5), if any.
    """

    step: int
    epoch: int
    loss: float
    lr: float
    output: SiameseOutput
    batch_size: int
    gradients: Gradients = field(default_factory=lambda: MappingProxyType({}))
    target_stats: Mapping[str, float] = field(default_factory=dict)
    _units: dict[tuple[str, torch.dtype | None], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def unit_rows(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``output.<name>`` (B, k) with l2-normalised rows, computed once per view.

        ``F.normalize(x.to(dtype), dim=1)`` (eps 1e-12: a zero row stays zero), so the
        step hooks that read the same rows (the train std and the centre ratio: z1 in
        float64; the views' alignment and the prediction-target cosines: z, p in float32)
        share one pass and get the values they would compute themselves.

        Args:
            name: a field of :class:`SiameseOutput` (``z1``, ``p2``, ...); ``t1``/``t2``
                are the targets, ``z1``/``z2`` when the encoder is its own target.
            dtype: None = the tensor's own if float32/float64, else float32.

        Raises:
            ValueError: the output has no such tensor (an h that was not handed in).
        """
        key = self._unit_key(name, dtype)
        if key not in self._units:
            x = getattr(self.output, key[0]).detach().to(key[1], copy=True)  # (B, k)
            norms = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(1e-12)  # (B, 1)
            self._units[key] = x.div_(norms)  # F.normalize's bits, one (B, k) buffer less
        return self._units[key]

    def _unit_key(self, name: str, dtype: torch.dtype | None) -> tuple[str, torch.dtype]:
        """(field, dtype) of :meth:`unit_rows`: ``t`` -> ``z`` without targets, dtype resolved.

        Resolved first, so ``unit_rows("z1")``, ``("t1")`` and ``("z1", float32)`` share rows.
        """
        if name in ("t1", "t2") and getattr(self.output, name) is None:
            name = "z" + name[1]
        x = getattr(self.output, name)
        if x is None or x.ndim != 2:
            raise ValueError(f"the step's {name} is not a (B, k) tensor")
        if dtype is None:
            dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        return name, dtype


@dataclass(frozen=True)
class EpochView:
    """What observers see after an epoch; eval-mode features come from elsewhere.

    Attributes:
        epoch: 1-based number of completed epochs.
        step: global steps completed.
        seconds: wall time of the epoch's training steps.
        images: training images this process saw in the epoch.
        is_last: whether this is the run's last epoch.
    """

    epoch: int
    step: int
    seconds: float
    images: int
    is_last: bool


def module_gradients(model: nn.Module, names: Sequence[str] = MODULES) -> Gradients:
    """Detached gradients of ``model``'s named parts (see :attr:`StepView.gradients`).

    Args:
        model: a network with attributes such as ``backbone``, ``projector``, ``predictor``.
        names: the parts, in order; a missing one maps to an empty tuple.
    """
    out: dict[str, tuple[torch.Tensor, ...]] = {}
    for name in names:
        part = getattr(model, name, None)
        params = part.parameters() if isinstance(part, nn.Module) else iter(())
        out[name] = tuple(p.grad.detach() for p in params if p.grad is not None)
    return MappingProxyType(out)


def step_view(
    step: int,
    epoch: int,
    loss: float,
    lr: float,
    output: SiameseOutput,
    batch_size: int,
    model: nn.Module,
    target_stats: Mapping[str, float],
    unit_rows: Mapping[str, torch.Tensor] = MappingProxyType({}),
) -> StepView:
    """The :class:`StepView` of a step, read from ``model`` after its optimiser step.

    Args:
        step: 1-based global step just completed.
        epoch: 0-based epoch in progress.
        loss: the global batch's loss.
        lr: the learning rate used.
        output: the step's outputs (detached by the trainer; detached again here; a None,
            such as a missing target or the h of a loop that does not hand it in, stays).
        batch_size: this process's batch.
        model: the trained network, whose ``.grad`` hold this step's gradients (or any
            module with ``backbone``, ``projector``, ``predictor`` attributes).
        target_stats: the eta provider's statistics.
        unit_rows: rows of ``output`` that the loss already l2-normalised, by field
            (:class:`siamlab.objectives.LossTerms`): ``F.normalize(x, dim=1)`` of the same
            tensor, the bits :meth:`StepView.unit_rows` would compute, so the step hooks
            take them instead of normalising again. Rows of another dtype or shape than
            the field's are left out.
    """
    detached = SiameseOutput._make(None if t is None else t.detach() for t in output)
    view = StepView(
        step,
        epoch,
        loss,
        lr,
        detached,
        batch_size,
        module_gradients(model),
        MappingProxyType(dict(target_stats)),
    )
    for name, rows in unit_rows.items():
        key = view._unit_key(name, None)  # the field's own dtype (float32 or float64)
        x = getattr(detached, key[0])
        if rows.dtype == x.dtype == key[1] and rows.shape == x.shape:
            view._units[key] = rows.detach()
    return view
