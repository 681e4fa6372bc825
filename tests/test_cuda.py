"""The CUDA paths no CPU run takes: nccl, SyncBN, bf16, channels_last, pinned memory, compile.

Every test here skips without a GPU (``pytest -m cuda`` selects them, e.g. in
``benchmarks/gpu_check.py``). Each compares the CUDA path with a plain one, so a pass
means "the same numbers", not only "it ran". TF32 is switched off where fp32 results
are compared (cuDNN and cuBLAS use it by default on Ampere and later).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import xarray as xr
from torch import nn

import siamlab.train.distributed as distributed
from siamlab.data.build import build_datasets
from siamlab.data.loader import train_loader
from siamlab.data.views import EpochSampler
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import SiameseOutput, create_model
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from siamlab.train.config import TrainConfig
from siamlab.train.speed import (
    autocast,
    bf16_supported,
    compile_available,
    prepare_model,
    to_device,
    to_float,
)
from tests.conftest import tiny_runs

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())"
    ),
]
GPU = torch.device("cuda", 0)


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """Exact fp32 matmuls and convolutions for the duration of a test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def one_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A one-process group with siamlab's CUDA backend, its helpers made to communicate.

    Alone, the helpers skip their collectives; here they run them (a group of one gives
    the identity), so every collective siamlab issues on a GPU job runs on nccl or gloo.
    """
    init = f"file://{tmp_path / 'rendezvous'}"
    dist.init_process_group(distributed.backend("cuda"), init_method=init, rank=0, world_size=1)
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    yield
    dist.destroy_process_group()


def _model(backbone: str = "resnet18") -> nn.Module:
    torch.manual_seed(0)
    stem = {"cifar_stem": True} if backbone.startswith("resnet") else {"width": 8}
    cfg = ModelConfig(backbone=backbone, **stem, dim=64, projector={"hidden_dim": 64})
    return create_model(cfg).to(GPU).train()


def _views(batch: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shape = (batch, 3, size, size)
    return torch.randn(shape, generator=g).to(GPU), torch.randn(shape, generator=g).to(GPU)


def _loss_and_grads(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor):
    """SimSiam's one-sided loss -cos(p1, sg(z2)), backpropagated: (output, loss, grads)."""
    out: SiameseOutput = to_float(model(x1, x2))  # type: ignore[assignment]
    loss = -(nn.functional.cosine_similarity(out.p1, out.z2.detach()).mean())
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, float(loss.detach()), grads


def _near(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    """``a`` equals ``b`` up to ``tol`` of ``b``'s largest entry (rounding of other kernels)."""
    err, scale = float((a - b).abs().max()), float(b.abs().max())
    assert err <= tol * max(scale, 1e-12), f"off by {err:.3g} at scale {scale:.3g}"


def test_cuda_collectives_on_one_process(one_process_group):
    """The helpers' CPU tensors go through gloo and CUDA tensors through nccl."""
    x = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(distributed.all_gather_cat(x), x)  # eta rows: CPU tensors
    assert distributed.mean_over_ranks(2.5) == 2.5
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.barrier()
    y = torch.tensor([1.0, 2.0], device=GPU, requires_grad=True)
    summed = distributed.sum_over_ranks(y)
    (summed * torch.tensor([3.0, 4.0], device=GPU)).sum().backward()
    assert torch.equal(summed, y.detach()) and torch.equal(y.grad.cpu(), torch.tensor([3.0, 4.0]))


def test_cuda_syncbn_ddp_step_equals_a_plain_step(one_process_group, no_tf32):
    """SyncBN (convert_batchnorm on CUDA) under DDP on nccl: the plain step's numbers."""
    x1, x2 = _views()
    _, loss, grads = _loss_and_grads(_model(), x1, x2)
    synced = distributed.convert_batchnorm(_model(), "cuda").to(GPU)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    wrapped = distributed.wrap_ddp(synced, GPU)
    assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
    _, loss_ddp, grads_ddp = _loss_and_grads(wrapped, x1, x2)
    assert loss_ddp == pytest.approx(loss, abs=1e-5)  # a cosine: of order 1
    for name, g in grads.items():
        _near(grads_ddp[f"module.{name}"], g, 1e-4)


def test_cuda_bf16_autocast_is_close_to_fp32(no_tf32):
    assert bf16_supported(GPU)
    x1, x2 = _views()
    model = _model()
    ref = to_float(model(x1, x2))
    with autocast(GPU, torch.bfloat16):
        low = to_float(model(x1, x2))
    assert low.z1.dtype == torch.float32 and not torch.equal(low.z1, ref.z1)  # bf16 ran
    cos = nn.functional.cosine_similarity(low.z1, ref.z1).min()
    assert cos > 0.98, f"bf16 z1 strays from fp32 (min cosine {cos:.4f})"


def test_cuda_channels_last_gives_the_same_numbers(no_tf32):
    x1, x2 = _views()
    ref, loss, grads = _loss_and_grads(_model(), x1, x2)
    model = prepare_model(_model(), TrainConfig(channels_last=True), GPU)
    c1, c2 = (to_device(x, GPU, channels_last=True) for x in (x1, x2))
    assert c1.is_contiguous(memory_format=torch.channels_last)
    out, loss_cl, grads_cl = _loss_and_grads(model, c1, c2)
    _near(out.z1, ref.z1, 1e-4)
    assert loss_cl == pytest.approx(loss, abs=1e-5)
    for name, g in grads.items():
        _near(grads_cl[name], g, 1e-3)


def test_cuda_compile_matches_eager(no_tf32):
    if not compile_available():
        pytest.skip("torch.compile needs a C++ compiler (g++) on PATH")
    x1, x2 = _views()
    ref, loss, _ = _loss_and_grads(_model("convnet_small"), x1, x2)
    compiled = prepare_model(_model("convnet_small"), TrainConfig(compile=True), GPU)
    out, loss_c, _ = _loss_and_grads(compiled, x1, x2)
    _near(out.z1, ref.z1, 1e-4)
    assert loss_c == pytest.approx(loss, abs=1e-5)


def test_cuda_loader_pins_batches_and_copies_them_exactly(tmp_path):
    cfg = tiny_runs(tmp_path, sets=["data.num_workers=1"])[0].config  # through a worker
    data = build_datasets(cfg.data, seed=0)
    sampler = EpochSampler(len(data.train_eval), 32, seed=0)
    sampler.set_epoch(0)
    data.train_views.set_epoch(0)
    x1, x2, _, idx = next(iter(train_loader(cfg.data, data.train_views, sampler, GPU)))
    assert x1.is_pinned() and x2.is_pinned()  # pin_memory defaults to on for CUDA
    on_gpu = to_device(x1, GPU, channels_last=False)
    torch.cuda.synchronize()
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), x1)
    assert len(idx) == 32


def test_cuda_runs_train_end_to_end_with_the_eta_table(tmp_path):
    """A tiny real run on the GPU at bf16 + channels_last, and a moving-average eta run
    (memmap table; the blend runs on the GPU) whose m = 0 equals SimSiam's losses."""
    gpu = ["train.device=cuda", "train.deterministic=true"]
    fast = ["train.precision=bf16", "train.channels_last=true"]
    run = train_run(tiny_runs(tmp_path / "fast", sets=[*gpu, *fast])[0], progress=False)
    assert open_run(run.directory).attrs["status"] == "finished"
    plain = open_run(train_run(tiny_runs(tmp_path / "a", sets=gpu)[0], progress=False).directory)
    eta = [
        "objective.eta.mode=moving_average",
        "objective.eta.momentum=0",
        "objective.eta.storage=memmap",
    ]
    other = train_run(tiny_runs(tmp_path / "b", sets=[*gpu, *eta])[0], progress=False)
    assert (other.directory / "eta" / "eta.slots.npy").is_file()
    xr.testing.assert_allclose(plain["loss"], open_run(other.directory)["loss"], rtol=1e-4)


def test_cuda_crop_resize_under_deterministic_mode_is_the_native_op():
    """``train.deterministic`` would send ``torchvision.ops.roi_align`` on CUDA to a
    version compiled on first use; the views call the native op, whose forward is
    deterministic: two calls agree bit for bit, and equal the op outside that mode."""
    from torchvision.ops import roi_align

    from siamlab.data.batched import crop_resize

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g).to(GPU)
    corner = torch.rand(64, 2, generator=g) * 16
    rois = torch.cat([torch.arange(64.0)[:, None], corner, corner + 8 + 8 * torch.rand(64, 1)], 1)
    rois = rois.to(GPU)
    plain = roi_align(x, rois, 24, sampling_ratio=-1, aligned=True)  # the native op
    saved = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first = crop_resize(x, rois, 24)
        assert torch.equal(first, crop_resize(x, rois, 24)) and torch.equal(first, plain)
    finally:
        torch.use_deterministic_algorithms(saved)
