import copy
import math

import pytest
import torch

from siamlab.bench.reference import ReferenceStep
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import create_model
from siamlab.run.assemble import RunLength, build_model, build_step
from siamlab.train.config import OptimConfig
from siamlab.train.distributed import DistInfo
from siamlab.train.loop import Trainer
from siamlab.train.optim import create_optimizer, initial_lr, lr_factor, set_lr
from tests.conftest import tiny_runs

CPU = torch.device("cpu")


def test_linear_scaling_rule():
    assert initial_lr(OptimConfig(base_lr=0.05), 512) == pytest.approx(0.1)


def test_cosine_per_step_and_per_epoch():
    step = OptimConfig(update="step")
    epoch = OptimConfig(update="epoch")
    assert lr_factor(step, 0, 0, 10, 4) == 1.0
    assert lr_factor(step, 20, 2, 10, 4) == pytest.approx(0.5)
    assert lr_factor(step, 25, 2, 10, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 25 / 40)))
    # the reference code: constant within an epoch, 0.5 (1 + cos(pi e / E))
    assert lr_factor(epoch, 25, 2, 10, 4) == pytest.approx(0.5)
    assert lr_factor(OptimConfig(schedule="constant"), 25, 2, 10, 4) == 1.0


def test_constant_predictor_lr_keeps_the_predictor_fixed():
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=16))
    opt = create_optimizer(model, OptimConfig(predictor_lr="constant"), 256)
    set_lr(opt, 0.05, 0.1)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"encoder": pytest.approx(0.005), "predictor": pytest.approx(0.05)}
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))  # all parameters, BN and biases too
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)


def test_warm_up_leaves_the_constant_predictor_lr_alone():
    # the reference code's fix_lr group holds the initial lr from the first step
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=16))
    cfg = OptimConfig(warmup_epochs=2)
    assert cfg.predictor_lr == "constant"  # the default (the paper after Table 1)
    opt = create_optimizer(model, cfg, 256)
    set_lr(opt, 0.05, lr_factor(cfg, 4, 0, 10, 4))  # step 5 of a 20-step warm-up
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"encoder": pytest.approx(0.05 * 5 / 20), "predictor": 0.05}


def test_predictor_group_holds_exactly_the_predictor():
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=16))
    opt = create_optimizer(model, OptimConfig(), 256)
    pred = next(g for g in opt.param_groups if g["name"] == "predictor")
    assert {id(p) for p in pred["params"]} == {id(p) for p in model.predictor.parameters()}


class _LastStep:
    """Keeps the last StepView; saves nothing."""

    def __init__(self) -> None:
        self.view = None

    def on_step_end(self, view):
        self.view = view

    def on_epoch_end(self, view):
        pass

    def after_step(self, step):
        pass

    def after_epoch(self, epoch, step, is_last):
        pass


def _sgd_steps(model, opt, first: int, last: int) -> None:
    """Steps ``first..last-1`` on seeded gradients with a decaying lr (two groups)."""
    for step in range(first, last):
        gen = torch.Generator().manual_seed(step)
        for p in model.parameters():
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=gen))
        set_lr(opt, 0.05, 1.0 / (step + 1))
        opt.step()


def _loop_twin(model):
    """``model``'s copy with torch's default CPU SGD (a per-tensor loop) in the same groups."""
    twin = copy.deepcopy(model)
    return twin, create_optimizer(twin, OptimConfig(predictor_lr="constant"), 256, fused=False)


def _same_bits(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_the_fused_sgd_gives_the_bits_of_torchs_per_tensor_loop():
    model = create_model(ModelConfig(backbone="convnet_small", width=8, dim=32))
    twin, loop = _loop_twin(model)
    fused = create_optimizer(model, OptimConfig(predictor_lr="constant"), 256)
    assert all(g["fused"] for g in fused.param_groups)
    _sgd_steps(model, fused, 0, 6)
    _sgd_steps(twin, loop, 0, 6)
    assert _same_bits(model, twin)
    bufs = [
        (fused.state[p]["momentum_buffer"], loop.state[q]["momentum_buffer"])
        for p, q in zip(model.parameters(), twin.parameters(), strict=True)
    ]
    assert all(torch.equal(a, b) for a, b in bufs)


def test_a_checkpoint_of_the_per_tensor_loop_resumes_fused_on_the_same_bits():
    model = create_model(ModelConfig(backbone="convnet_small", width=8, dim=32))
    twin, loop = _loop_twin(model)
    _sgd_steps(twin, loop, 0, 3)
    model.load_state_dict(twin.state_dict())
    fused = create_optimizer(model, OptimConfig(predictor_lr="constant"), 256)
    fused.load_state_dict(copy.deepcopy(loop.state_dict()))  # its groups say fused=False
    assert all(g["fused"] and g["foreach"] is None for g in fused.param_groups)
    _sgd_steps(model, fused, 3, 6)
    _sgd_steps(twin, loop, 3, 6)
    assert _same_bits(model, twin)


def test_one_trainer_step_equals_the_reference_step(tmp_path):
    """siamlab's Trainer (SimSiamStep) and ``siamlab bench``'s plain loop, from the same
    weights and batch: the same loss, every parameter's gradient and the updated weights."""
    torch.set_num_threads(1)
    cfg = tiny_runs(tmp_path, sets=["train.precision=fp32"])[0].config  # as the reference
    ours = build_model(cfg, 0, CPU, DistInfo())
    reference = ReferenceStep(cfg, CPU)
    ref_params = [p for p in reference.model.parameters() if p.requires_grad]
    our_params = [p for p in ours.parameters() if p.requires_grad]
    assert [p.shape for p in ref_params] == [p.shape for p in our_params]
    with torch.no_grad():
        for mine, theirs in zip(our_params, ref_params, strict=True):
            mine.copy_(theirs)
    g = torch.Generator().manual_seed(3)
    x1, x2 = (torch.randn(16, 3, 8, 8, generator=g) for _ in range(2))
    watch = _LastStep()
    trainer = Trainer(
        sgd_step=build_step(
            cfg, ours, create_optimizer(ours, cfg.optim, 16), CPU, RunLength(1, 1, 1)
        ),
        batches=lambda epoch, start: [(x1, x2, torch.zeros(16), torch.arange(16))],
        steps_per_epoch=1,
        epochs=1,
        monitor=watch,
        saver=watch,
    )
    assert trainer.fit(0, 1) == 1
    ref_loss = reference(x1, x2)
    assert watch.view.loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    for mine, theirs in zip(our_params, ref_params, strict=True):
        assert mine.grad is not None and theirs.grad is not None
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)  # the same SGD update
