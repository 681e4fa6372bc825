"""Everything that touches torch.distributed, with one-process fallbacks.

siamlab runs under PyTorch's own launcher (``torchrun``): it reads RANK, WORLD_SIZE
and LOCAL_RANK from the environment. Without them every helper here acts as for a
single process. Backend: nccl for CUDA tensors on a CUDA job, with gloo beside it for
the CPU tensors some helpers exchange (scalars, eta rows); gloo alone on CPU.
"""

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes results and checkpoints."""
        return self.rank == 0


def backend(device_type: str) -> str:
    """The process group's backend for a job on ``device_type``.

    nccl carries only CUDA tensors; :func:`all_gather_cat`, :func:`mean_over_ranks` and
    :func:`any_rank` exchange CPU tensors, which go through gloo in the same group.
    """
    return "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (once per process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend(device_type))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of processes of the job (1 alone)."""
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    """Wait for every process (no-op alone)."""
    if is_distributed():
        dist.barrier()


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N_r, ...) from every rank along dim 0, in rank order.

    Ranks may hold different N_r. Alone, returns ``x``.
    """
    if not is_distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]]))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype)
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


def mean_over_ranks(value: float) -> float:
    """The mean of a per-rank scalar over ranks (the global batch's mean loss)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any (so all ranks stop together)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _SumOverRanks(torch.autograd.Function):
    """Differentiable sum over ranks: forward and backward are both an all-reduce (SUM).

    Every rank's loss depends on the summed tensor, so the gradient reaching one rank's
    input is the sum of the gradients of all ranks' outputs: backward all-reduces too.
    The backward is itself this function, so it stays differentiable.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        """All-reduce a contiguous copy of ``x`` (the input is left untouched)."""
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        """The gradient summed over ranks."""
        return sum_over_ranks(grad)


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed element-wise over every rank, with gradients (alone: ``x`` itself)."""
    if not is_distributed():
        return x
    out: torch.Tensor = _SumOverRanks.apply(x)
    return out


class CrossProcessBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span every process (SyncBN on any device).

    The paper syncs BN across devices (docs/paper-recipes.md#batchnorm-placement): statistics are
    those of the global batch. torch's SyncBatchNorm needs a GPU; this one all-reduces
    the per-channel sums (two passes: mean, then centred squares) with autograd-aware
    collectives, so it also works with gloo on CPU. Alone it is plain BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with the global batch's statistics in training mode."""
        if not (self.training and is_distributed()):
            return super().forward(x)
        dtype, x = x.dtype, x.float()  # statistics in fp32 under bf16 autocast, as torch's BN
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        sums = sum_over_ranks(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n  # (C,)
        var = sum_over_ranks((x - mean.view(shape)).pow(2).sum(dims)) / n  # (C,) biased
        if self.training and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * n / (n - 1)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(dtype)


def convert_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm by a cross-process one (torch's SyncBatchNorm on CUDA)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = CrossProcessBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        with torch.no_grad():  # the same tensors, as torch's conversion: requires_grad kept
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            if module.track_running_stats:
                out.running_mean, out.running_var = module.running_mean, module.running_var
                out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_batchnorm(child, device_type))
    return out


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (alone: the model itself)."""
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    # No buffer broadcast before each forward: cross-process BN keeps the running stats
    # equal on every rank. Every rank builds the model from the same seed (or loads the
    # same checkpoint), so its buffers start equal: the init-time broadcast, which on
    # torch < 2.13 skips the buffers too, has nothing to change.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, **_no_forward_buffer_sync())


def _no_forward_buffer_sync() -> dict[str, Any]:
    """DDP's keyword that turns off the buffer broadcast before each forward.

    ``forward_sync_buffers`` from torch 2.13 on (``broadcast_buffers``, deprecated there,
    warns); ``broadcast_buffers`` before, where the other is an unknown keyword (a GPU
    image may hold an older torch than the one pinned here).
    """
    known = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    name = "forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers"
    return {name: False}
