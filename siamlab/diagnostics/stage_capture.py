"""Pooled outputs of a backbone's stages, captured by forward hooks during an eval pass.

The per-stage diagnostics (:mod:`siamlab.diagnostics.stage_hook`) need, for each stage k
of the backbone (:meth:`~siamlab.models.backbones.Backbone.stages`), its output feature
map (B, C_k, H_k, W_k) averaged over space to (B, C_k), the same global average pooling
that turns the last stage into h. :class:`StageCapture` registers a forward hook on each
stage module for the duration of one pass, pools every batch's output as it goes by and
keeps the rows it is told to keep; the model itself is not changed (the hooks are removed
on exit, also after an error).
"""

from collections.abc import Callable, Sequence
from types import TracebackType

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The stage modules of ``model``'s backbone, input to output; [] if it has none.

    A :class:`~siamlab.models.siamese.SiameseNet` has them (``model.backbone.stages()``);
    any other model (a user's own) gives [], and the stage diagnostics record nothing.
    """
    stages = getattr(getattr(model, "backbone", None), "stages", None)
    return list(stages()) if callable(stages) else []


def global_average(output: Tensor) -> Tensor:
    """Mean over every dim after the channel dim, in float32: (B, C, ...) -> (B, C)."""
    x = output.detach()
    if x.ndim > 2:
        x = x.flatten(2).mean(dim=-1, dtype=torch.float32)  # (B, C)
    return x.float()


class StageCapture:
    """Context manager: while open, each forward of the stages records their pooled output.

    After each forward call :meth:`keep` with the batch's boolean row mask (the rows to
    store, moved to the CPU); :meth:`outputs` returns the stored rows of every stage.

    Args:
        modules: the stage modules (:func:`stage_modules`); none = record nothing.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self._modules = list(modules)
        self._pending: list[Tensor | None] = [None] * len(self._modules)
        self._kept: list[list[Tensor]] = [[] for _ in self._modules]
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> "StageCapture":
        for k, module in enumerate(self._modules):
            self._handles.append(module.register_forward_hook(self._hook(k)))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, k: int) -> Callable[[nn.Module, object, Tensor], None]:
        def pool(module: nn.Module, inputs: object, output: Tensor) -> None:
            self._pending[k] = global_average(output)  # (B, C_k)

        return pool

    def keep(self, rows: Tensor) -> None:
        """Store the rows ``rows`` (bool, (B,)) of the last forward's pooled stage outputs.

        Raises:
            RuntimeError: a stage did not run in that forward (it is not on the path).
        """
        for k, pending in enumerate(self._pending):
            if pending is None:
                raise RuntimeError(
                    f"backbone stage {k + 1} produced no output in the last forward pass: "
                    "Backbone.stages() must name modules on the forward path"
                )
            self._kept[k].append(pending[rows.to(pending.device)].cpu())  # (b, C_k)
        self._pending = [None] * len(self._modules)

    def outputs(self) -> tuple[Tensor, ...]:
        """Every stage's stored rows, in the order they were kept: (K, C_k) each."""
        return tuple(torch.cat(rows) for rows in self._kept if rows)
