"""Speed options of the training step: bf16 autocast, channels_last, torch.compile."""

import copy
from pathlib import Path

import pytest
import torch

from siamlab.errors import ConfigError
from siamlab.models.siamese import SiameseOutput, create_model
from siamlab.run.assemble import RunLength, build_step
from siamlab.train.config import TrainConfig
from siamlab.train.optim import create_optimizer
from siamlab.train.speed import autocast_dtype, bf16_supported, compile_available, to_float
from siamlab.train.step import SimSiamStep
from tests.conftest import tiny_runs

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path: Path, train: TrainConfig, backbone: str = "convnet_small") -> SimSiamStep:
    """The SGD step of the tiny config with the speed options of ``train`` applied."""
    cfg = tiny_runs(tmp_path, sets=[f"model.backbone={backbone}"])[0].config
    cfg = cfg.model_copy(update={"train": train})
    torch.manual_seed(0)
    model = create_model(cfg.model)
    return build_step(cfg, model, create_optimizer(model, cfg.optim, 16), CPU, RunLength(1, 1, 1))


def _views(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, size, size, generator=g), torch.randn(16, 3, size, size, generator=g)


def _one_step(
    step: SimSiamStep, x1: torch.Tensor, x2: torch.Tensor, channels_last: bool = False
) -> tuple[SiameseOutput, float]:
    if channels_last:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    done = step(x1, x2, torch.arange(16), 0, 0)
    return done.output, done.loss


def test_defaults_are_off():
    cfg = TrainConfig()
    assert (cfg.precision, cfg.channels_last, cfg.compile) == ("fp32", False, False)
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError):
        autocast_dtype("fp8")


def test_bf16_step_runs_on_cpu_close_to_fp32(tmp_path):
    x1, x2 = _views()
    _, ref = _one_step(_trainer(tmp_path, TrainConfig()), x1, x2)
    bf16 = _trainer(tmp_path, TrainConfig(precision="bf16"))
    out, loss = _one_step(bf16, x1, x2)
    assert torch.isfinite(torch.tensor(loss))
    assert abs(loss - ref) < 0.02, (loss, ref)
    assert all(t.dtype == torch.float32 for t in out[:6])  # the loss and diagnostics see fp32
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # fp32 master weights
    _, second = _one_step(bf16, x1, x2)  # the optimiser step worked on fp32 weights
    assert torch.isfinite(torch.tensor(second)) and second != loss


def test_channels_last_matches_contiguous(tmp_path):
    x1, x2 = _views()
    plain = _trainer(tmp_path, TrainConfig())
    nhwc = _trainer(tmp_path, TrainConfig(channels_last=True))
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        _, a = _one_step(plain, x1, x2)
        _, b = _one_step(nhwc, x1, x2, channels_last=True)
        assert a == pytest.approx(b, abs=1e-5)
    for p, q in zip(plain.model.parameters(), nhwc.model.parameters(), strict=True):
        torch.testing.assert_close(p, q.contiguous(), rtol=1e-4, atol=1e-5)
    state = nhwc.model.state_dict()  # checkpoints load into a contiguous model
    create_model(tiny_runs(tmp_path)[0].config.model).load_state_dict(state)


@pytest.mark.parametrize(
    "train", [TrainConfig(), TrainConfig(precision="bf16", channels_last=True)], ids=str
)
def test_no_kernel_reads_memory_it_did_not_write(tmp_path, train):
    """configure_torch turns off deterministic mode's NaN fill of new tensors (~2% of a
    quick step). With the fill, a kernel reading memory it never wrote would turn the
    step's numbers NaN or change them; two steps give the same bits with and without."""
    from siamlab.train.device import configure_torch

    was = torch.are_deterministic_algorithms_enabled()
    configure_torch(TrainConfig(threads=1))
    assert not torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.use_deterministic_algorithms(was, warn_only=True)  # as the other tests had it
    x1, x2 = _views()
    runs = []
    for fill in (True, False):
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
        try:
            step = _trainer(tmp_path, train)
            outs = [_one_step(step, x1, x2, train.channels_last) for _ in range(2)]
        finally:
            torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        runs.append((outs, [p.detach().clone() for p in step.model.parameters()]))
    (outs_fill, weights_fill), (outs_plain, weights_plain) = runs
    for (out_a, loss_a), (out_b, loss_b) in zip(outs_fill, outs_plain, strict=True):
        assert loss_a == loss_b
        for a, b in zip(out_a, out_b, strict=True):
            assert (a is None and b is None) or torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(weights_fill, weights_plain, strict=True))


def test_to_float_keeps_the_named_tuple_and_nones():
    t = torch.ones(2, 3, dtype=torch.bfloat16)
    out = to_float(SiameseOutput(t, t, t, t, t, t))
    assert isinstance(out, SiameseOutput) and out.t1 is None
    assert out.z1.dtype == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_bf16_detection_follows_the_device_query(monkeypatch, native):
    # CUDA asks torch.cuda, a CPU asks oneDNN; the bench skips the bf16 peak when False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: not native)
    assert bf16_supported(torch.device("cuda")) is native
    assert bf16_supported(CPU) is (not native)
    monkeypatch.setattr(torch.backends, "mkldnn", None)  # a build without oneDNN: no bf16
    assert bf16_supported(CPU) is False


def test_bf16_detected_on_a_cpu_with_native_bf16():
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if not {"avx512_bf16", "amx_bf16"} & set(flags):
        pytest.skip("this CPU has no native bf16 instructions")
    assert bf16_supported(CPU) is True


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs g++ on PATH")
def test_compile_option_constructs(tmp_path):
    trainer = _trainer(tmp_path, TrainConfig(compile=True))
    assert trainer.forward is not trainer.model
    assert type(trainer.forward).__name__ == "OptimizedModule"
    # the compiled wrapper shares the weights: a checkpoint of the model is the same
    assert trainer.forward._orig_mod is trainer.model  # type: ignore[union-attr]
    state = copy.deepcopy(trainer.model.state_dict())  # checkpoints carry the plain keys
    assert not any(k.startswith("_orig_mod") for k in state)
    assert state.keys() == _trainer(tmp_path, TrainConfig()).model.state_dict().keys()
    # compiling itself takes minutes on 2 CPU cores: the first step is not run here


def test_compile_refused_without_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setattr("siamlab.train.speed.compile_available", lambda: False)
    with pytest.raises(ConfigError, match="train.compile"):
        _trainer(tmp_path, TrainConfig(compile=True))
