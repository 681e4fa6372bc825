"""DirectPred and DirectCopy: closed forms, the EMA of F, no gradient into W_p, DDP, resume."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import xarray as xr

from siamlab.config.validation import validate_config
from siamlab.models.set_predictor import (
    DirectCopy,
    DirectPred,
    batch_correlation,
    directcopy_weight,
    directpred_weight,
)
from siamlab.models.siamese import create_model
from siamlab.objectives import ObjectiveConfig, simsiam_loss
from siamlab.results.store import open_run
from siamlab.run.assemble import RunLength, build_model, build_step
from siamlab.run.train_run import train_run
from siamlab.train.checkpoint import load_checkpoint
from siamlab.train.distributed import DistInfo
from siamlab.train.loop import Trainer
from siamlab.train.optim import create_optimizer
from tests.conftest import StepRecorder, resume_after_kill, tiny_runs

CPU = torch.device("cpu")
F64 = torch.float64


def _psd(d: int, rank: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random F = Q diag(s) Q^T of the given rank, with its Q (d, d) and s (d,)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    s = torch.zeros(d, dtype=F64)
    s[:rank] = torch.rand(rank, generator=g, dtype=F64) * 3 + 0.1
    return (q * s) @ q.T, q, s


def test_directpred_of_a_diagonal_f_is_the_square_root_of_s_over_s_max_plus_eps():
    f = torch.diag(torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=F64))
    want = torch.diag(torch.tensor([1.0, 0.5, 0.25, 0.0], dtype=F64) + 0.1)
    torch.testing.assert_close(directpred_weight(f, 0.1), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(directpred_weight(7.0 * f, 0.1), want, rtol=0, atol=1e-12)


def test_directcopy_of_a_diagonal_f_is_f_over_its_norm_plus_eps():
    s = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=F64)
    f = torch.diag(s)
    fro = math.sqrt(16 + 1 + 1 / 16)
    got = directcopy_weight(f, 0.1, "frobenius")
    torch.testing.assert_close(got, torch.diag(s / fro + 0.1), rtol=0, atol=1e-12)
    got = directcopy_weight(f, 0.1, "spectral")
    torch.testing.assert_close(got, torch.diag(s / 4 + 0.1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["directpred", "frobenius", "spectral"])
def test_w_p_commutes_with_f_is_symmetric_and_has_the_eps_floor(kind):
    f, q, s = _psd(12, rank=7)  # 5 null directions
    eps = 0.05
    w = directpred_weight(f, eps) if kind == "directpred" else directcopy_weight(f, eps, kind)
    assert torch.linalg.matrix_norm(f @ w - w @ f) < 1e-12 * torch.linalg.matrix_norm(f)
    torch.testing.assert_close(w, w.T, rtol=0, atol=1e-13)
    # F's null space keeps eps (DirectPred: + sqrt(rounding of F's zero eigenvalues))
    tol = 1e-7 if kind == "directpred" else 1e-12
    eig = torch.linalg.eigvalsh(w)
    assert eig.min() >= eps - 1e-12 and eig.min() == pytest.approx(eps, abs=tol)
    # in F's own basis W_p is diagonal with the closed-form eigenvalues
    scale = {"directpred": None, "frobenius": s.norm(), "spectral": s.max()}[kind]
    want = (s / s.max()).sqrt() + eps if scale is None else s / scale + eps
    torch.testing.assert_close(q.T @ w @ q, torch.diag(want), rtol=0, atol=tol)


def test_an_all_zero_f_gives_eps_times_the_identity():
    zero = torch.zeros(3, 3, dtype=F64)
    eye = torch.eye(3, dtype=F64)
    torch.testing.assert_close(directpred_weight(zero, 0.2), 0.2 * eye)
    torch.testing.assert_close(directcopy_weight(zero, 0.2), 0.2 * eye)


def test_the_ema_of_f_and_the_refresh_every_k_steps():
    torch.manual_seed(0)
    head = DirectPred(6, rho=0.3, eps=0.01, update_every=2)
    torch.testing.assert_close(head.weight, 1.01 * torch.eye(6))  # W_p of an isotropic F
    z = [torch.randn(8, 6) for _ in range(4)]
    c1 = torch.cat(z[:2]).double().T @ torch.cat(z[:2]).double() / 16
    c2 = torch.cat(z[2:]).double().T @ torch.cat(z[2:]).double() / 16
    head.update(z[0], z[1], step=1)
    torch.testing.assert_close(head.correlation, c1)  # the first update sets F
    torch.testing.assert_close(head.weight, 1.01 * torch.eye(6))  # 2 does not divide 1
    head.update(z[2], z[3], step=2)
    torch.testing.assert_close(head.correlation, 0.3 * c1 + 0.7 * c2)
    torch.testing.assert_close(head.weight, directpred_weight(head.correlation, 0.01).float())
    assert int(head.updates) == 2
    assert set(head.state_dict()) == {"correlation", "weight", "updates"}


@pytest.mark.parametrize("kind", ["directpred", "directcopy"])
def test_no_gradient_reaches_w_p_and_the_optimiser_has_no_predictor_group(kind):
    torch.manual_seed(0)
    raw = {"backbone": "convnet_small", "width": 4, "dim": 16, "predictor": {"kind": kind}}
    model = create_model(validate_config({"model": raw}).model)
    assert list(model.predictor.parameters()) == []
    opt = create_optimizer(model, validate_config({}).optim, 256)
    assert [g["name"] for g in opt.param_groups] == ["encoder"]
    assert not model.predictor.weight.requires_grad
    x1, x2 = torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)
    out = model(x1, x2)
    simsiam_loss(out, ObjectiveConfig()).backward()
    assert model.predictor.weight.grad is None
    assert all(p.grad is not None for p in model.projector.parameters())
    # p = W_p z, and the gradient reaching z is W_p^T times the one reaching p
    z = out.z1.detach().requires_grad_()
    g = torch.randn(8, 16)
    (model.predictor(z) * g).sum().backward()
    torch.testing.assert_close(z.grad, g @ model.predictor.weight)


def test_a_training_step_blends_its_z_into_f_and_the_next_step_uses_the_new_w_p(tmp_path):
    torch.set_num_threads(1)
    sets = ["model.predictor.kind=directpred", "train.precision=fp32"]  # closed forms in fp32
    cfg = tiny_runs(tmp_path, sets=sets)[0].config
    model = build_model(cfg, 0, CPU, DistInfo())
    watch = StepRecorder(lambda view: (view.output, model.predictor.weight.clone()))
    g = torch.Generator().manual_seed(3)
    batches = [tuple(torch.randn(16, 3, 8, 8, generator=g) for _ in range(2)) for _ in range(2)]
    opt = create_optimizer(model, cfg.optim, 16)
    trainer = Trainer(
        sgd_step=build_step(cfg, model, opt, CPU, RunLength(2, 2, 1)),
        batches=lambda epoch, start: [
            (a, b, torch.zeros(16), torch.arange(16)) for a, b in batches
        ],
        steps_per_epoch=2,
        epochs=1,
        monitor=watch,
        saver=watch,
    )
    assert trainer.fit(0, 2) == 2
    (out1, w1), (out2, w2) = watch.steps
    c1, c2 = batch_correlation(out1.z1, out1.z2), batch_correlation(out2.z1, out2.z2)
    torch.testing.assert_close(model.predictor.correlation, 0.3 * c1 + 0.7 * c2)
    torch.testing.assert_close(w1, directpred_weight(c1, 0.01).float())
    torch.testing.assert_close(w2, model.predictor.weight)
    torch.testing.assert_close(out1.p1, out1.z1 * 1.01)  # step 1: W_p of an isotropic F
    torch.testing.assert_close(out2.p1, out2.z1 @ w1.T)  # step 2: the W_p set after step 1


def _ddp_worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    g = torch.Generator().manual_seed(10 + rank)
    b = 3 + rank  # ranks may hold different batch sizes
    z1, z2 = torch.randn(b, 5, generator=g), torch.randn(b, 5, generator=g)
    head = DirectCopy(5, rho=0.5, eps=0.01, update_every=1, norm="frobenius")
    head.update(z1, z2, step=1)
    torch.save({"z": torch.cat([z1, z2]), **head.state_dict()}, f"{out}{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes import siamlab (about 15 s on 2 cores)
def test_under_ddp_every_rank_holds_the_correlation_of_the_global_batch(tmp_path):
    init, out = f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "rank")
    mp.spawn(_ddp_worker, args=(init, out), nprocs=2, join=True)
    got = [torch.load(f"{out}{rank}.pt") for rank in range(2)]
    z = torch.cat([got[0]["z"], got[1]["z"]]).double()  # (2 * (3 + 4), 5)
    want = z.T @ z / z.shape[0]
    for state in got:
        torch.testing.assert_close(state["correlation"], want)
        torch.testing.assert_close(state["weight"], directcopy_weight(want, 0.01).float())


def test_alone_the_batch_correlation_is_that_of_both_views():
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    z = torch.cat([z1, z2]).double()
    torch.testing.assert_close(batch_correlation(z1, z2), z.T @ z / 8)


@pytest.mark.slow
def test_a_resumed_directpred_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """Killed after epoch 2 (step 8), between two refreshes of W_p (every 3 steps)."""
    sets = ["train.epochs=3", "model.predictor.kind=directpred", "model.predictor.update_every=3"]
    full = train_run(tiny_runs(tmp_path / "a", sets=sets)[0], progress=False)
    resumed = resume_after_kill(tiny_runs(tmp_path / "b", sets=sets)[0], 2, monkeypatch)
    a, b = open_run(full.directory), open_run(resumed.directory)
    for name in ("loss", "z_std_train", "pred_cosine"):
        xr.testing.assert_equal(a[name], b[name])  # bit-identical on CPU
    wa = load_checkpoint(full.directory / "checkpoints")["model"]
    wb = load_checkpoint(resumed.directory / "checkpoints")["model"]
    assert {"predictor.correlation", "predictor.weight", "predictor.updates"} <= set(wa)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert int(wa["predictor.updates"]) == 12
