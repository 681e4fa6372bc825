"""Per-stage spectra: backbone stages, their capture in the probe pass, metrics and schema."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.diagnostics.hooks import HookContext
from siamlab.diagnostics.monitor import stage_sets
from siamlab.diagnostics.probe import EvalFeatures, ProbeCache, embed_dataset, fixed_subset
from siamlab.diagnostics.rank import effective_rank, rankme
from siamlab.diagnostics.spectrum import CovarianceAccumulator, covariance_spectrum
from siamlab.diagnostics.spectrum_hook import SpectrumHook
from siamlab.diagnostics.stage_capture import StageCapture, global_average, stage_modules
from siamlab.diagnostics.stage_hook import StageSpectrumHook, stage_values
from siamlab.diagnostics.std import mean_channel_std
from siamlab.errors import ResultsError
from siamlab.models.backbones import BACKBONES
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import Embedding, create_model
from siamlab.plots import plot, save_figure
from siamlab.results.recorder import Recorder
from siamlab.results.schema import DIMS, dim_coordinate, variables
from siamlab.train.views import EpochView
from tests.conftest import TOY_EPOCHS, TOY_STAGE_WIDTHS

pytestmark = pytest.mark.usefixtures("one_thread")

STAGE_VARS = ("stage_spectrum", "stage_rankme", "stage_erank", "stage_std")
WIDTHS = {  # channels of each stage's output, input to output
    "convnet_small": (4, 8, 16, 32),  # width 4: w, 2w, 4w, 8w
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
}


def _model(backbone: str = "convnet_small") -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"width": 4} if backbone == "convnet_small" else {"cifar_stem": True}
    cfg = ModelConfig(backbone=backbone, dim=16, projector={"hidden_dim": 16}, **extra)
    return create_model(cfg).eval()


def _images(n: int, size: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(
        torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 3, torch.arange(n)
    )


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_names_stages_whose_last_pooled_output_is_h(name):
    model = _model(name)
    stages = model.backbone.stages()
    assert stages and stage_modules(model) == stages
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), StageCapture(stages) as capture:
        h = model.backbone(x)  # (2, C)
        capture.keep(torch.ones(2, dtype=torch.bool))
    outputs = capture.outputs()
    assert tuple(o.shape[1] for o in outputs) == WIDTHS[name]  # every stage ran, in order
    assert all(o.shape[0] == 2 for o in outputs)
    torch.testing.assert_close(outputs[-1], h)  # global average pooling of the last stage
    assert all(not m._forward_hooks for m in stages)  # the hooks are gone
    assert dim_coordinate("stage", len(stages)) == [f"stage{k}" for k in (1, 2, 3, 4)]


def test_convnet_stage_outputs_are_the_pooled_blocks_and_rows_are_kept_by_mask():
    model = _model()
    body, x = model.backbone.body, torch.randn(5, 3, 8, 8)
    keep = torch.tensor([True, False, True, True, False])
    with torch.no_grad(), StageCapture(model.backbone.stages()) as capture:
        model.embed(x)
        capture.keep(keep)
        for k, pooled in enumerate(capture.outputs()):
            block_out = body[: 3 * k + 3](x)  # conv-BN-ReLU blocks 1..k+1, (5, C, H, W)
            torch.testing.assert_close(pooled, block_out.mean(dim=(2, 3))[keep])
    assert global_average(torch.ones(2, 3)).shape == (2, 3)  # already pooled: unchanged


def test_capture_removes_its_hooks_after_an_error_and_says_when_a_stage_did_not_run():
    model = _model()
    stages = model.backbone.stages()
    with pytest.raises(ZeroDivisionError), StageCapture(stages):
        1 / 0  # noqa: B018
    assert all(not m._forward_hooks for m in stages)
    with (
        StageCapture([torch.nn.Linear(2, 2)]) as capture,
        pytest.raises(RuntimeError, match="no output"),
    ):
        capture.keep(torch.ones(1, dtype=torch.bool))


def test_embed_dataset_returns_the_asked_rows_in_their_order():
    model, data = _model(), _images(20)
    every = embed_dataset(model, data, torch.device("cpu"), 7, torch.arange(20))
    rows = torch.tensor([13, 2, 2, 19, 0])  # any order, repeats allowed
    some = embed_dataset(model, data, torch.device("cpu"), 7, rows)
    assert len(every.stages) == 4 and len(some.stages) == 4
    for a, b in zip(every.stages, some.stages, strict=True):
        torch.testing.assert_close(a[rows], b)
    torch.testing.assert_close(some.h, every.h)
    assert embed_dataset(model, data, torch.device("cpu"), 7).stages == ()  # none asked


class _Counting(EvalFeatures):
    calls = 0

    def embed(self, dataset, batch_size, stage_rows=None):  # type: ignore[no-untyped-def]
        _Counting.calls += 1
        return super().embed(dataset, batch_size, stage_rows)


def test_the_bank_pass_records_the_probe_stages_so_the_hook_needs_no_pass():
    model, data = _model(), _images(48)
    sets = {"bank": data, "probe": fixed_subset(data, 20)}
    features = _Counting(model, torch.device("cpu"))
    expected = ProbeCache(features, sets, 16)
    own = expected.stages("probe")  # no expectation: a pass over the probe set itself
    assert _Counting.calls == 1
    probes = ProbeCache(features, sets, 16)
    probes.expect_stages(stage_sets([StageSpectrumHook(), SpectrumHook()]))
    probes.get("bank")
    assert _Counting.calls == 2
    piggy = probes.stages("probe")
    assert _Counting.calls == 2  # taken from the bank's pass
    for a, b in zip(own, piggy, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(piggy[-1], probes.get("probe").h)  # last stage = h, row by row


def _rankme_closed_form(k: int, width: int, eps: float = 1e-7) -> float:
    """RankMe of k equal singular values among ``width``: p = 1/k + eps (k), eps (rest)."""
    p = np.array([1 / k + eps] * k + [eps] * (width - k))
    return float(np.exp(-(p * np.log(p)).sum()))


def test_stage_values_match_closed_forms_on_rank_k_features():
    n, widths, ranks = 64, (8, 16), (3, 16)
    g = torch.Generator().manual_seed(0)
    outputs = []
    for width, k in zip(widths, ranks, strict=True):
        q, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))  # (n, k)
        outputs.append(torch.cat([q, torch.zeros(n, width - k, dtype=torch.float64)], dim=1))
    constant = torch.ones(n, 4)  # a collapsed stage: every image the same
    values = stage_values((*outputs, constant), torch.device("cpu"))
    assert values["stage_erank"][:2] == pytest.approx(ranks, rel=1e-9)  # k equal sv: k
    expected = [_rankme_closed_form(k, w) for k, w in zip(ranks, widths, strict=True)]
    assert values["stage_rankme"][:2] == pytest.approx(expected, rel=1e-9)
    assert values["stage_erank"][2] == pytest.approx(1.0) and values["stage_std"][2] == 0.0
    spectra = values["stage_spectrum"]
    assert spectra.shape == (3, 16)  # padded to the widest stage
    assert np.isnan(spectra[0, 8:]).all() and np.isnan(spectra[2, 4:]).all()
    assert np.isfinite(spectra[1]).all()


def test_stage_values_equal_the_single_output_functions_on_the_same_features():
    g = torch.Generator().manual_seed(2)
    outputs = tuple(torch.randn(50, c, generator=g).relu() for c in (3, 7, 12))
    values = stage_values(outputs, torch.device("cpu"))
    for k, x in enumerate(outputs):
        acc = CovarianceAccumulator()
        acc.update(x)
        assert values["stage_rankme"][k] == rankme(acc.singular_values())
        assert values["stage_erank"][k] == effective_rank(acc.singular_values())
        assert values["stage_std"][k] == mean_channel_std(x)
        np.testing.assert_allclose(
            values["stage_spectrum"][k, : x.shape[1]], covariance_spectrum(x).numpy(), rtol=1e-12
        )


def test_hook_on_a_model_its_last_stage_is_h_of_the_spectrum_hook_and_schema_holds():
    model, data = _model(), _images(40)
    probes = ProbeCache(EvalFeatures(model, torch.device("cpu")), {"probe": data}, 16)
    ctx = HookContext(DiagnosticsConfig(), 40, 3, False, True)
    hook, view = StageSpectrumHook.build(ctx), EpochView(1, 1, 1.0, 16, True)
    stages, h_values = hook.on_epoch(view, probes), SpectrumHook.build(ctx).on_epoch(view, probes)
    assert set(stages) == set(STAGE_VARS)
    for ours, theirs in (("stage_rankme", "h_rankme"), ("stage_erank", "h_erank")):
        assert stages[ours][-1] == pytest.approx(h_values[theirs], rel=1e-12)
    np.testing.assert_allclose(stages["stage_spectrum"][-1], h_values["h_spectrum"], rtol=1e-12)
    assert stages["stage_std"][-1] == pytest.approx(mean_channel_std(probes.get("probe").h))
    recorder = Recorder()
    recorder.add(1, stages)
    recorder.add(2, stages)
    ds = recorder.to_dataset({})
    assert ds["stage_spectrum"].dims == ("epoch", "stage", "component")
    assert all(ds[n].dims == ("epoch", "stage") for n in STAGE_VARS[1:])
    assert list(ds["stage"].values) == ["stage1", "stage2", "stage3", "stage4"]
    assert ds["stage"].attrs["long_name"] == DIMS["stage"].long_name
    for name in STAGE_VARS:
        assert ds[name].attrs["long_name"] == variables()[name].long_name
        assert ds[name].attrs["units"] == "1" and ds[name].attrs["bn_mode"] == "eval"
    assert ds.sizes["component"] == 32  # the widest stage (8 x width 4)


def test_hook_records_nothing_for_a_model_without_stages_or_with_non_finite_outputs():
    class Plain(torch.nn.Module):
        def embed(self, x):  # type: ignore[no-untyped-def]
            h = x.flatten(1)
            return Embedding(h, h, h)

    data = _images(8)
    plain = ProbeCache(EvalFeatures(Plain(), torch.device("cpu")), {"probe": data}, 4)
    view = EpochView(1, 1, 1.0, 4, True)
    assert plain.stages("probe") == () and StageSpectrumHook().on_epoch(view, plain) == {}
    model = _model()
    with torch.no_grad():
        model.backbone.body[0].weight.fill_(math.inf)
    broken = ProbeCache(EvalFeatures(model, torch.device("cpu")), {"probe": data}, 4)
    assert StageSpectrumHook().on_epoch(view, broken) == {}


def _embed_worker(rank: int, init: str, out: str, rows: torch.Tensor) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    emb = embed_dataset(_model(), _images(23), torch.device("cpu"), 4, rows)
    torch.save(emb.stages, f"{out}{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two spawned processes import torch: ~15 s on 2 cores
def test_two_processes_record_the_same_stage_rows_as_one(tmp_path):
    rows = torch.tensor([22, 3, 4, 4, 0, 17])  # rows of both ranks' shares, any order
    alone = embed_dataset(_model(), _images(23), torch.device("cpu"), 4, rows).stages
    init, out = f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "rank")
    torch.multiprocessing.spawn(_embed_worker, args=(init, out, rows), nprocs=2, join=True)
    for rank in range(2):
        for a, b in zip(alone, torch.load(f"{out}{rank}.pt"), strict=True):
            torch.testing.assert_close(a, b)


def test_plot_stages_draws_rank_over_epochs_and_the_spectrum_per_stage(study, tmp_path):
    fig = plot(study, "stages")
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert len(fig.axes) == 6  # 3 toy stages: ranks above, spectra below
    assert [ax.get_title() for ax in top] == [
        "stage1, 2 ch.",
        "stage2, 4 ch.",
        "stage3 = h, 8 ch.",
    ]
    for k, (ax, width) in enumerate(zip(top, TOY_STAGE_WIDTHS, strict=True)):
        bad_erank, good_erank, bad_rankme, good_rankme = ax.get_lines()[:4]  # bad first
        assert good_erank.get_linewidth() > good_rankme.get_linewidth()  # erank under RankMe
        assert set(good_rankme.get_ydata()) == {0.5 * width}  # good keeps its rank
        assert good_erank.get_ydata()[-1] == pytest.approx(0.9 * 0.5 * width)
        expected = 0.5 * width / (1 + k * TOY_EPOCHS)  # bad loses rank, more so deeper
        assert bad_rankme.get_ydata()[-1] == pytest.approx(expected)
    for ax, width in zip(bottom, TOY_STAGE_WIDTHS, strict=True):
        assert ax.get_yscale() == "log" and ax.get_xlim()[1] == width
        assert "last epoch" in ax.get_title()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()][2:] == [
        "effective rank (wide, light)",
        "RankMe",
    ]
    assert "epoch 2" in plot(study, "stages", epoch=2).axes[3].get_title()
    with pytest.raises(ResultsError, match="`stages` diagnostics hook"):
        plot(study.drop_vars(["stage_spectrum"]), "stages")
    assert save_figure(fig, tmp_path / "stages.png").stat().st_size > 5_000
