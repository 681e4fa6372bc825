import pytest
import torch

from siamlab.train.lars import LARS


def test_lars_step_matches_its_formula_on_a_hand_computed_case():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))  # 1-D: no adaptation, no weight decay
    opt = LARS([w, b], lr=0.5, momentum=0.9, weight_decay=0.1, trust_coefficient=0.001, eps=0.0)
    w.grad = torch.tensor([[0.6, 0.8]])  # |g| = 1
    b.grad = torch.tensor([2.0])
    opt.step()
    # g' = g + 0.1 w = (0.9, 1.2); q = 0.001 * 5 / (1 + 0.1 * 5) = 1/300; mu = q g'
    # w <- w - 0.5 mu = (3 - 0.0015, 4 - 0.002)
    assert torch.allclose(w.detach(), torch.tensor([[2.9985, 3.998]]), atol=1e-7)
    assert torch.allclose(b.detach(), torch.tensor([0.0]))  # 1 - 0.5 * 2
    # second step, same gradient: mu <- 0.9 mu + q2 (g + 0.1 w)
    w0, mu0 = w.detach().clone(), torch.tensor([[0.003, 0.004]])
    w.grad = torch.tensor([[0.6, 0.8]])
    b.grad = torch.tensor([2.0])
    opt.step()
    g2 = torch.tensor([[0.6, 0.8]]) + 0.1 * w0
    q2 = 0.001 * w0.norm() / (1.0 + 0.1 * w0.norm())
    expected = w0 - 0.5 * (0.9 * mu0 + q2 * g2)
    assert torch.allclose(w.detach(), expected, atol=1e-7)
    assert torch.allclose(b.detach(), torch.tensor([0.0 - 0.5 * (0.9 * 2.0 + 2.0)]))


def test_lars_zero_weight_gets_plain_sgd_step_and_1d_can_be_adapted():
    w = torch.nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=0.1, momentum=0.0)
    w.grad = torch.ones(2, 2)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((2, 2), -0.1))  # q = 1 when |w| = 0
    b = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = LARS([b], lr=1.0, momentum=0.0, trust_coefficient=0.01, eps=0.0, exclude_1d=False)
    b.grad = torch.tensor([0.0, 2.0])
    opt.step()  # q = 0.01 * 5 / 2
    assert torch.allclose(b.detach(), torch.tensor([3.0, 4.0 - 0.025 * 2.0]))


def test_lars_rejects_bad_hyperparameters():
    with pytest.raises(ValueError):
        LARS([torch.nn.Parameter(torch.ones(1))], lr=-1.0)
