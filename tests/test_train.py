import math

import pytest
import torch

from siamlab.models.config import ModelConfig
from siamlab.models.siamese import create_model
from siamlab.train.config import OptimConfig
from siamlab.train.optim import create_optimizer, initial_lr, lr_factor, set_lr


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


def test_predictor_group_holds_exactly_the_predictor():
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=16))
    opt = create_optimizer(model, OptimConfig(), 256)
    pred = next(g for g in opt.param_groups if g["name"] == "predictor")
    assert {id(p) for p in pred["params"]} == {id(p) for p in model.predictor.parameters()}
    assert torch.is_tensor(pred["params"][0])
