"""Each pluggable component checked for what it means (issue: every ablation of the paper)."""

import math

import pytest
import torch
from torch import nn

from siamlab.config.objective import ObjectiveConfig
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import SiameseOutput, create_model
from siamlab.models.target import MomentumTarget, momentum_at
from siamlab.objectives import cross_entropy_similarity, negative_cosine, simsiam_loss
from siamlab.train.config import OptimConfig
from siamlab.train.lars import LARS
from siamlab.train.optim import create_optimizer, lr_factor, set_lr
from tests.conftest import negative_cosine_grad


def _model(**model) -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelConfig(backbone="convnet_small", width=4, dim=16, **model))


def _grads(model: nn.Module, objective: ObjectiveConfig) -> dict[str, bool]:
    """Which module groups receive a non-zero gradient from one loss evaluation."""
    model.zero_grad(set_to_none=True)
    x1, x2 = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    simsiam_loss(model(x1, x2), objective).backward()
    out = {}
    for name in ("backbone", "projector", "predictor", "target"):
        module = getattr(model, name)
        params = list(module.parameters()) if module is not None else []
        out[name] = any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    return out


@pytest.mark.parametrize("stop_grad", [True, False])
@pytest.mark.parametrize(
    "predictor", ["mlp", "linear", "none", "fixed", "directpred", "directcopy"]
)
@pytest.mark.parametrize("momentum", [0.0, 0.99])
def test_which_parameters_receive_gradients(stop_grad, predictor, momentum):
    kind = "mlp" if predictor == "fixed" else predictor
    head = {"kind": kind, **({"trainable": False} if predictor == "fixed" else {})}
    model = _model(predictor=head, target={"momentum": momentum})
    got = _grads(model, ObjectiveConfig(stop_grad=stop_grad))
    assert got["backbone"] and got["projector"]  # the online encoder always learns
    assert got["predictor"] == (predictor in ("mlp", "linear"))
    assert not got["target"]  # the momentum target never receives gradients
    assert (model.target is None) == (momentum == 0)


def test_stop_grad_is_inert_with_a_momentum_target():
    """Why RunConfig refuses stop_grad=false with m > 0: it would change nothing."""
    model = _model(target={"momentum": 0.9})
    x1, x2 = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    grads = []
    for sg in (True, False):
        model.zero_grad(set_to_none=True)
        simsiam_loss(model(x1, x2), ObjectiveConfig(stop_grad=sg)).backward()
        grads.append([p.grad.clone() for p in model.backbone.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_without_predictor_stop_grad_halves_the_gradient():
    """Sec. 4.2: with no predictor the symmetric loss's gradient with stop-grad has the
    same direction as without it, and half the magnitude."""
    model = _model(predictor={"kind": "none"})
    x1, x2 = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    grads = {}
    for sg in (True, False):
        model.zero_grad(set_to_none=True)
        simsiam_loss(model(x1, x2), ObjectiveConfig(stop_grad=sg)).backward()
        grads[sg] = torch.cat([p.grad.flatten() for p in model.parameters()])
    scale = grads[False].abs().max().item()
    torch.testing.assert_close(grads[True], 0.5 * grads[False], rtol=1e-4, atol=1e-6 * scale)
    cos = torch.nn.functional.cosine_similarity(grads[True], grads[False], dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-6)


def test_fixed_predictor_does_not_change_in_training():
    model = _model(predictor={"trainable": False})
    before = {k: v.clone() for k, v in model.predictor.state_dict().items() if "weight" in k}
    opt = create_optimizer(model, OptimConfig(), 64)
    assert {g["name"] for g in opt.param_groups} == {"encoder"}
    for _ in range(3):
        opt.zero_grad()
        simsiam_loss(
            model(torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)), ObjectiveConfig()
        ).backward()
        opt.step()
    for k, v in model.predictor.state_dict().items():
        if k in before:
            assert torch.equal(v, before[k])


def test_constant_predictor_lr_while_the_encoder_decays():
    model = _model()
    opt = create_optimizer(model, OptimConfig(predictor_lr="constant"), 256)
    lrs = []
    for step in (0, 50, 99):
        set_lr(opt, 0.05, lr_factor(OptimConfig(), step, step // 10, 10, 10))
        lrs.append({g["name"]: g["lr"] for g in opt.param_groups})
    assert [x["predictor"] for x in lrs] == [0.05, 0.05, 0.05]
    assert lrs[0]["encoder"] > lrs[1]["encoder"] > lrs[2]["encoder"]


def _bn_layout(seq: nn.Module) -> list[str]:
    return [type(m).__name__ for m in seq.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))]


@pytest.mark.parametrize(
    ("preset", "projector", "predictor"),
    [  # Table 3 rows (a)-(d); 2-layer projector here
        ("none", ["Linear", "Linear"], ["Linear", "Linear"]),
        ("hidden", ["Linear", "BatchNorm1d", "Linear"], ["Linear", "BatchNorm1d", "Linear"]),
        (
            "default",
            ["Linear", "BatchNorm1d", "Linear", "BatchNorm1d"],
            ["Linear", "BatchNorm1d", "Linear"],
        ),
        (
            "all",
            ["Linear", "BatchNorm1d", "Linear", "BatchNorm1d"],
            ["Linear", "BatchNorm1d", "Linear", "BatchNorm1d"],
        ),
    ],
)
def test_bn_presets_match_table_3(preset, projector, predictor):
    model = _model(bn_preset=preset, projector={"layers": 2})
    assert _bn_layout(model.projector) == projector
    assert _bn_layout(model.predictor) == predictor
    for seq in (model.projector, model.predictor):  # a Linear has a bias iff no BN follows
        mods = [m for m in seq if isinstance(m, (nn.Linear, nn.BatchNorm1d))]
        for m, nxt in zip(mods, [*mods[1:], None], strict=True):
            if isinstance(m, nn.Linear):
                assert (m.bias is None) == isinstance(nxt, nn.BatchNorm1d)


def test_projector_output_affine_switch():
    off = _model()
    on = _model(projector={"bn_output_affine": True})
    assert not off.projector[-1].affine and on.projector[-1].affine


def test_cross_entropy_hand_computed():
    p = torch.tensor([[0.0, math.log(3.0)]])  # softmax(p) = (1/4, 3/4)
    z = torch.tensor([[0.0, 0.0]])  # softmax(z) = (1/2, 1/2)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert cross_entropy_similarity(p, z).item() == pytest.approx(expected)


def test_asymmetric_uses_one_direction():
    t = [torch.randn(4, 6, requires_grad=True) for _ in range(6)]
    out = SiameseOutput(*t)
    loss = simsiam_loss(out, ObjectiveConfig(symmetry="asymmetric"))
    loss.backward()
    h1, h2, z1, z2, p1, p2 = t
    assert loss.item() == pytest.approx(negative_cosine(p1, z2).item())  # D(p1, sg(z2)) only
    assert p2.grad is None and z1.grad is None and z2.grad is None
    assert p1.grad is not None
    torch.testing.assert_close(p1.grad.double(), negative_cosine_grad(p1, z2))


def test_ema_update_matches_its_formula():
    online = _model()
    target = MomentumTarget(online.backbone, online.projector)
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    target.update(online.backbone, online.projector, 0.9)
    online_params = [*online.backbone.parameters(), *online.projector.parameters()]
    for old, new, theta in zip(before, target.parameters(), online_params, strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * theta)
    assert momentum_at(0.99, "cosine", 0, 100) == pytest.approx(0.99)
    assert momentum_at(0.99, "cosine", 100, 100) == pytest.approx(1.0)


def test_zero_momentum_is_plain_simsiam_with_no_copy():
    plain, m0 = _model(), _model(target={"momentum": 0.0})
    assert m0.target is None
    assert plain.state_dict().keys() == m0.state_dict().keys()
    x1, x2 = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    assert torch.equal(
        simsiam_loss(plain(x1, x2), ObjectiveConfig()), simsiam_loss(m0(x1, x2), ObjectiveConfig())
    )


def test_lars_update_hand_computed():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, weight_decay=0.5, momentum=0.9, trust_coefficient=0.01)
    w.grad = torch.tensor([[1.0, 0.0]])
    b.grad = torch.tensor([2.0])
    opt.step()
    u = torch.tensor([[1.0, 0.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])  # g + wd w
    u = u * (0.01 * 5.0 / (1.0 + 0.5 * 5.0))  # LARC trust ratio tc |w| / (|g| + wd |w|)
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.1 * u)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # 1-D: plain SGD


def test_linear_warmup_then_cosine():
    cfg = OptimConfig(warmup_epochs=2)
    assert lr_factor(cfg, 0, 0, 10, 10) == pytest.approx(0.05)
    assert lr_factor(cfg, 19, 1, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 20, 2, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 60, 6, 10, 10) == pytest.approx(0.5)


def test_two_pairs_per_image_are_independent():
    from siamlab.data.build import build_datasets
    from siamlab.data.config import DataConfig
    from siamlab.data.views import EpochSampler, PairBatches

    data = build_datasets(DataConfig(image_size=8, train_limit=64), seed=0, pairs=2)
    batch = next(iter(PairBatches(EpochSampler(64, 8, 0), 2)))
    assert len(batch) == 16 and batch[0] // 2 == batch[1] // 2
    a, b = data.train_views[batch[0]], data.train_views[batch[1]]
    assert a[3] == b[3] and not torch.equal(a[0], b[0])  # same image, other augmentations
