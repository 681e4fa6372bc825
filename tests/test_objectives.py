import math

import pytest
import torch
import torch.nn.functional as F

from siamlab.config.objective import ObjectiveConfig
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import SiameseOutput, create_model
from siamlab.objectives import (
    SIMILARITIES,
    negative_cosine,
    simsiam_loss,
    simsiam_loss_terms,
    stop_gradient,
)
from tests.conftest import negative_cosine_grad


def test_negative_cosine_closed_form():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # cosines: 1 and 1/sqrt(2) -> D = -(1 + 0.7071)/2
    assert negative_cosine(p, z).item() == pytest.approx(-(1 + 1 / math.sqrt(2)) / 2)
    assert negative_cosine(z, z).item() == pytest.approx(-1.0)
    assert negative_cosine(z, -z).item() == pytest.approx(1.0)


def test_symmetric_loss_closed_form():
    g = torch.Generator().manual_seed(0)
    t = [torch.randn(5, 7, generator=g) for _ in range(6)]
    out = SiameseOutput(*t)
    expected = 0.5 * negative_cosine(out.p1, out.z2) + 0.5 * negative_cosine(out.p2, out.z1)
    for sg in (True, False):
        assert simsiam_loss(out, ObjectiveConfig(stop_grad=sg)).item() == pytest.approx(
            expected.item()
        )


@pytest.mark.parametrize("similarity", list(SIMILARITIES))
@pytest.mark.parametrize("symmetry", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("stop_grad", [True, False])
@pytest.mark.parametrize("targets", [False, True])
def test_loss_terms_have_the_bits_of_the_formula(similarity, symmetry, stop_grad, targets):
    """The loss and every gradient equal D's of Eq. 4 bit for bit; the rows are F.normalize's.

    z feeds the predictor and (without stop-grad) the target, so its gradient sums two
    paths: their order of accumulation is part of what must not change.
    """
    if targets and not stop_grad:
        pytest.skip("a momentum target has no graph: stop_grad=False is refused for it")
    cfg = ObjectiveConfig(similarity=similarity, symmetry=symmetry, stop_grad=stop_grad)
    results = []
    for terms in (False, True):
        g = torch.Generator().manual_seed(5)
        leaves = [torch.randn(32, 16, generator=g).requires_grad_() for _ in range(2)]
        w = torch.randn(16, 16, generator=g).requires_grad_()  # a linear predictor
        z1, z2 = (x * 3 for x in leaves)
        t = (torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g))
        out = SiameseOutput(z1, z2, z1, z2, z1 @ w, z2 @ w, *(t if targets else (None, None)))
        if terms:
            loss, rows = simsiam_loss_terms(out, cfg)
        else:
            d, (t1, t2) = SIMILARITIES[similarity], out.targets()
            t1, t2 = stop_gradient(t1, stop_grad), stop_gradient(t2, stop_grad)
            if symmetry == "symmetric":
                loss = 0.5 * d(out.p1, t2) + 0.5 * d(out.p2, t1)
            else:
                loss = d(out.p1, t2)
            rows = {}
        loss.backward()
        results.append((loss.detach(), [x.grad for x in (*leaves, w)], rows, out))
    (plain, plain_grads, _, _), (loss, grads, rows, out) = results
    assert torch.equal(loss, plain)
    for a, b in zip(grads, plain_grads, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    if similarity != "cosine":
        assert rows == {}
        return
    names = ["p1", "t2"] + (["p2", "t1"] if symmetry == "symmetric" else [])
    assert sorted(rows) == sorted(names)
    t1, t2 = out.targets()
    fields = {"p1": out.p1, "p2": out.p2, "t1": t1, "t2": t2}
    for name in names:
        assert torch.equal(rows[name], F.normalize(fields[name].detach(), dim=1))


def _grads_through_target(
    stop_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """z2, p1 and the gradients of L = 1/2 D(p1, sg(z2)) + 1/2 D(p1', p1') w.r.t. them.

    The second term holds only detached copies, so every gradient comes from the first.
    """
    z2 = torch.randn(4, 8, requires_grad=True)
    p1 = torch.randn(4, 8, requires_grad=True)
    out = SiameseOutput(z2, z2, p1.detach(), z2, p1, p1.detach())
    loss = simsiam_loss(out, ObjectiveConfig(stop_grad=stop_grad))
    loss.backward()
    return z2, p1, z2.grad, p1.grad


def test_stop_grad_blocks_the_target_branch():
    z2, p1, z_grad, p_grad = _grads_through_target(stop_grad=True)
    assert z_grad is None  # no gradient reaches z2 as a target
    assert p_grad is not None  # the prediction gets 1/2 dD(p1, z2)/dp1, in closed form
    torch.testing.assert_close(p_grad.double(), 0.5 * negative_cosine_grad(p1, z2))


def test_without_stop_grad_the_target_branch_gets_gradient():
    z2, p1, z_grad, p_grad = _grads_through_target(stop_grad=False)
    assert z_grad is not None and p_grad is not None  # D is symmetric in its two arguments
    torch.testing.assert_close(z_grad.double(), 0.5 * negative_cosine_grad(z2, p1))
    torch.testing.assert_close(p_grad.double(), 0.5 * negative_cosine_grad(p1, z2))


@pytest.mark.parametrize("stop_grad", [True, False])
def test_stop_gradient_is_the_one_switch(stop_grad):
    z = 2 * torch.randn(3, 4, requires_grad=True)  # (3, 4), part of a graph
    t = stop_gradient(z, stop_grad)
    assert torch.equal(t, z) and t.requires_grad is not stop_grad
    assert (t.grad_fn is None) is stop_grad


def test_stop_grad_in_the_full_model():
    """With stop-grad, the encoder's gradient comes only through p (via the predictor)."""
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=16))
    x1, x2 = torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8)
    grads = {}
    for sg in (True, False):
        model.zero_grad()
        out = model(x1, x2)
        simsiam_loss(out, ObjectiveConfig(stop_grad=sg)).backward()
        grads[sg] = model.projector[0].weight.grad.clone()
    # Both reach the encoder, but differently: without stop-grad, extra terms via z.
    assert grads[True].abs().sum() > 0
    assert not torch.allclose(grads[True], grads[False])
