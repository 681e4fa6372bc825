"""The diagnostics contract: registry, schema from hooks, hooks by name, read-only views."""

import pytest
import torch
from torch.utils.data import TensorDataset

from siamlab.config.validation import validate_config
from siamlab.diagnostics.build import build_hooks
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.hooks import EpochHook, HookContext, StepHook, Summary
from siamlab.diagnostics.probe import EvalFeatures, ProbeCache
from siamlab.diagnostics.registry import DEFAULT_HOOKS, HOOKS, registered_variables
from siamlab.errors import ConfigError
from siamlab.models.siamese import create_model
from siamlab.objectives import simsiam_loss
from siamlab.results.schema import variables
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from siamlab.train.views import EpochView, step_view
from tests.conftest import tiny_runs

# the variables of results/schema.py before the hooks declared their own (hard-coded once)
SCHEMA_BEFORE = {
    "loss", "lr", "z_std_train", "epoch_loss", "z_std_eval", "z_channel_std_eval",
    "knn_top1", "eta_drift", "eta_cosine", "eta_age", "images_per_second", "grad_norm",
    "z_alignment_train", "h_branch_cosine_train", "pz_cosine_train", "z_centre_ratio_train",
    "loss_jitter", "h_std_eval", "p_std_eval", "z_spectrum", "p_spectrum", "h_spectrum",
    "z_rankme", "z_erank", "h_rankme", "h_erank", "z_erank_fraction", "h_alpha",
    "h_alpha_r2", "z_uniformity", "z_centre_ratio", "pred_cosine", "pred_cosines",
    "pred_eigenvalues", "pred_commutator", "pred_asymmetry", "verdict", "eval_linear_top1",
    "eval_linear_top5", "eval_linear_train_top1", "eval_knn_top1", "eval_knn_top5",
}  # fmt: skip
# added since, each by one hook: centred geometry (issue 14) and the loss's sampling noise
ADDED = {
    f"{x}_{m}"
    for x in ("z", "p", "h")
    for m in (
        "centre_norm",
        "residual_norm",
        "residual_std",
        "residual_erank_fraction",
        "residual_uniformity",
    )
} | {"pz_cosine_sem_train", "loss_noise", "loss_noise_ratio", "cosine_loss", "start_loss"}
ADDED |= {"verdict_evidence", "run_verdict", "run_verdict_onset_epoch", "run_verdict_evidence"}
ADDED |= {"run_verdict_provisional"}
ADDED |= {"stage_spectrum", "stage_rankme", "stage_erank", "stage_std"}  # per-stage spectra
SCHEMA = SCHEMA_BEFORE | ADDED


def test_schema_gathered_from_the_hooks_is_the_schema_of_before():
    assert set(variables()) == SCHEMA
    hook_names = [v.name for v in registered_variables()]
    assert len(hook_names) == len(set(hook_names))  # one producer per variable
    assert set(hook_names) == {n for n in SCHEMA if not n.startswith("eval_")}
    assert variables()["grad_norm"].dims == ("step", "module")
    assert variables()["z_spectrum"].extra["rows"] == "l2-normalised"


def test_unknown_hook_is_a_config_error_listing_the_registered_ones():
    with pytest.raises(ConfigError) as exc:
        validate_config({"diagnostics": {"hooks": ["loss", "spectra"]}})
    message = str(exc.value)
    assert "diagnostics.hooks" in message and "'spectra'" in message
    assert all(name in message for name in HOOKS)
    with pytest.raises(ConfigError, match="twice"):
        validate_config({"diagnostics": {"hooks": ["loss", "loss"]}})
    assert DiagnosticsConfig().hooks == list(DEFAULT_HOOKS)


def test_conditional_hooks_are_left_out_where_they_do_not_apply():
    cfg = DiagnosticsConfig()
    without = build_hooks(cfg.hooks, HookContext(cfg, 1, 2, False, True))
    with_eta = build_hooks(cfg.hooks, HookContext(cfg, 1, 2, True, True))
    assert len(with_eta) == len(without) + 1 == len(HOOKS)
    assert type(with_eta[-1]).__name__ == "EtaStatsHook"


def test_a_hook_subset_records_only_its_variables(tmp_path):
    spec = tiny_runs(tmp_path, sets=["diagnostics.hooks=[loss,eval_std]"])[0]
    ds = open_run(train_run(spec, progress=False).directory)
    expected = {"loss", "lr", "epoch_loss", "images_per_second"}
    expected |= {"z_std_eval", "z_channel_std_eval", "h_std_eval", "p_std_eval"}
    assert set(ds.data_vars) == expected


def _snapshot(model: torch.nn.Module) -> dict[str, object]:
    """Copies of every parameter, buffer, gradient and training flag."""
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "grads": grads,
        "training": {n: m.training for n, m in model.named_modules()},
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny real SiameseNet after one SGD step, a sub-module left in eval mode."""
    spec = tiny_runs(tmp_path_factory.mktemp("run"))[0]
    cfg = spec.config
    torch.manual_seed(0)
    model = create_model(cfg.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(16, 3, 8, 8, generator=g) for _ in range(2))
    model.train()
    out = model(x1, x2)
    loss = simsiam_loss(out, cfg.objective)
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.projector.eval()  # a mixed train/eval state that must survive the eval passes
    view = step_view(1, 0, float(loss.detach()), 0.05, out, 16, model, {"eta_drift": 0.1})
    images = torch.randn(96, 3, 8, 8, generator=g)
    data = TensorDataset(images, torch.arange(96) % 3, torch.arange(96))
    ctx = HookContext(cfg.diagnostics, 1, 3, True, True)
    return model, view, data, ctx


def test_the_snapshot_sees_a_train_mode_forward(trained):
    model, _, data, _ = trained
    before = _snapshot(model)
    model.train()
    with torch.no_grad():
        model.embed(data.tensors[0][:8])  # BN running statistics move
    assert not _same(before["buffers"], _snapshot(model)["buffers"])
    model.load_state_dict(before["params"] | before["buffers"])
    for name, module in model.named_modules():
        module.training = before["training"][name]
    assert _same(before, _snapshot(model))


@pytest.mark.parametrize("name", list(HOOKS))
def test_every_registered_hook_leaves_the_model_untouched(trained, name):
    model, view, data, ctx = trained
    hook = build_hooks([name], ctx)[0]
    sets = dict.fromkeys(("bank", "test", "probe"), data)
    probes = ProbeCache(EvalFeatures(model, torch.device("cpu")), sets, 32)
    before = _snapshot(model)
    values = {}
    if isinstance(hook, StepHook):
        values.update(hook.on_step(view))
    if isinstance(hook, EpochHook):
        values.update(hook.on_epoch(EpochView(1, 1, 1.0, 16, True), probes))
    if isinstance(hook, Summary):
        hook.summarise("step", 1, {"loss": view.loss})
        values.update(hook.summarise("epoch", 1, {"epoch_loss": view.loss, "z_std_eval": 0.1}))
    assert _same(before, _snapshot(model))
    declared = {v.name for v in type(hook).variables}
    assert values and set(values) <= declared  # it measured something, all declared
