"""Speed options of the training step: bf16 autocast, channels_last and torch.compile.

Each option is a key of :class:`~siamlab.train.config.TrainConfig` and off by default,
because each changes the floating-point results (slightly for channels_last, which picks
other convolution kernels; visibly for bf16). ``precision`` and ``channels_last`` may be
``auto`` (the quick profile's choice): :func:`resolve_speed` turns them into what this
device runs, once per run, and everything below sees only the resolved values. The
helpers here are the only code that applies them; :class:`~siamlab.train.step.SimSiamStep`
calls :func:`autocast` and :func:`to_float`, :class:`~siamlab.train.loop.Trainer`
:func:`to_device`, and :func:`siamlab.run.assemble.build_step` :func:`prepare_model`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, cast

import torch
from torch import nn

from siamlab.errors import ConfigError
from siamlab.train.config import TrainConfig
from siamlab.train.distributed import wrap_ddp

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a ``train.precision`` value (None = plain fp32).

    Raises:
        ConfigError: for an unknown precision.
    """
    if precision not in DTYPES:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[precision]


def bf16_supported(device: torch.device) -> bool:
    """True when ``device`` runs bf16 matmuls natively (CUDA Ampere+, CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch.backends, "mkldnn", None)
    return bool(cpu is not None and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_speed(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """``cfg`` with ``precision`` and ``channels_last`` resolved for ``device`` (no ``auto``).

    ``precision=auto`` is bf16 where :func:`bf16_supported`, else fp32.
    ``channels_last=auto`` is on with bf16 (the layout the fast oneDNN / cuDNN bf16
    kernels want) and on a CPU whose ``precision=auto`` resolved to fp32 (oneDNN's NHWC
    fp32 convolutions: 1.20x of a quick step on an AVX2-only EPYC, README "Speed"); off
    with an explicit ``precision=fp32``, the exact path, and on CUDA at fp32 (unmeasured).
    """
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if bf16_supported(device) else "fp32"
    layout = cfg.channels_last
    if layout == "auto":
        fast_fp32 = cfg.precision == "auto" and device.type == "cpu"
        layout = precision == "bf16" or fast_fp32
    return cfg.model_copy(update={"precision": precision, "channels_last": bool(layout)})


def speed_label(cfg: TrainConfig) -> str:
    """A resolved config's speed options in a few characters, e.g. ``bf16+CL`` or ``fp32``."""
    return precision_label(cfg.precision, cfg.channels_last is True) + "+compile" * cfg.compile


def precision_label(precision: str, channels_last: bool) -> str:
    """What a run's training forward ran as, e.g. ``bf16+CL`` (its ``metrics.nc`` attrs)."""
    return precision + "+CL" * channels_last


def recorded_precision(attrs: Mapping[Hashable, Any]) -> str:
    """:func:`precision_label` of a run's ``metrics.nc`` attrs; "" when they do not say."""
    ran = str(attrs.get("precision", ""))
    return precision_label(ran, bool(attrs.get("channels_last") == 1)) if ran else ""


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Run the enclosed ops under autocast to ``dtype``; a no-op when ``dtype`` is None.

    Matmuls and convolutions run in ``dtype``; reductions, normalisations and the
    optimiser stay in fp32 (the master weights are never cast).
    """
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def to_float(tensors: tuple[Any, ...]) -> tuple[Any, ...]:
    """Cast every floating tensor of a (named) tuple to fp32, keeping its type and Nones.

    Autocast leaves the network's outputs in bf16; the loss and the diagnostics
    (eigendecompositions, stds of z/|z|) want fp32. The cast is differentiable.
    """
    cast = [
        t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors
    ]
    return type(tensors)(*cast) if hasattr(tensors, "_fields") else tuple(cast)


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Move a batch of images (B, 3, H, W) to ``device``, in channels_last layout if asked."""
    if channels_last and x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


def compile_available() -> bool:
    """True when torch.compile can build CPU/GPU kernels here (inductor needs a C++ compiler)."""
    return hasattr(torch, "compile") and shutil.which("g++") is not None


def prepare_model(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """Apply the layout option, wrap for DDP, compile if asked: the module training calls.

    Args:
        model: the network, on ``device``. With ``cfg.channels_last`` it is converted in
            place before the DDP wrap (parameters keep their values, only the strides of
            4-D weights change, so checkpoints and ``state_dict`` are unaffected).
        cfg: ``channels_last`` and ``compile`` are read.
        device: where the model lives (DDP's device).

    Returns:
        ``model``, its DDP wrapper under torchrun, compiled when ``cfg.compile``.

    Raises:
        ConfigError: compile is asked but unavailable here.
        ValueError: ``cfg`` still says ``auto`` (call :func:`resolve_speed` first).
    """
    if "auto" in (cfg.precision, cfg.channels_last):
        raise ValueError("resolve_speed(cfg, device) first: prepare_model takes resolved options")
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = wrap_ddp(model, device)
    if not cfg.compile:
        return forward
    if not compile_available():
        raise ConfigError(
            "train.compile=true needs torch.compile and a C++ compiler (g++) on PATH; "
            "install one or set train.compile=false."
        )
    return cast(nn.Module, torch.compile(forward))  # an OptimizedModule sharing the weights
