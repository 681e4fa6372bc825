"""Per-kind config rules: options of another kind, layering, BN presets, one lr key, import time."""

import subprocess
import sys
from pathlib import Path

import pytest

from siamlab.config.study import StudyFile, expand_study
from siamlab.config.validation import validate_config
from siamlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model": {"backbone": "resnet18", "width": 8}},
            "model.width applies to backbone convnet_small only (backbone is resnet18)",
        ),
        (
            {"model": {"backbone": "convnet_small", "cifar_stem": True}},
            "model.cifar_stem applies to backbone resnet18, resnet34, resnet50 only",
        ),
        (
            {"model": {"predictor": {"kind": "none", "hidden_dim": 8}}},
            "model.predictor.hidden_dim applies to predictor.kind mlp only "
            "(predictor.kind is none)",
        ),
        (
            {"objective": {"eta": {"mode": "off", "k": 10}}},
            "objective.eta.k applies to eta.mode cached only (eta.mode is off)",
        ),
        ({"model": {"target": {"schedule": "cosine"}}}, "model.target.schedule applies to a"),
        (
            {"model": {"bn_preset": "none", "projector": {"bn_hidden": True}}},
            "model.bn_preset=none sets model.projector.bn_hidden=False",
        ),
        ({"optim": {"fix_pred_lr": True}}, "did you mean 'optim.predictor_lr'?"),
        ({"model": {"widht": 8}}, "did you mean 'model.width'?"),
    ],
)
def test_a_key_that_does_not_apply_is_an_error(raw, message):
    with pytest.raises(ConfigError) as exc:
        validate_config(raw)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("raw", "message", "not_listed"),
    [
        (
            {"model": {"predictor": {"made_up": 1}}},  # the default kind, mlp
            "unknown key 'model.predictor.made_up' (valid keys here for model.predictor.kind "
            "mlp: bn_hidden, bn_output, hidden_dim, kind, trainable)",
            ["rho", "eps", "update_every", "norm"],
        ),
        (
            {"model": {"predictor": {"kind": "directpred", "made_up": 1}}},
            "(valid keys here for model.predictor.kind directpred: eps, kind, rho, update_every)",
            ["hidden_dim", "norm"],
        ),
        (
            {"model": {"predictor": {"kind": "none", "made_up": 1}}},
            "(valid keys here for model.predictor.kind none: kind)",
            ["trainable"],
        ),
        (
            {"model": {"made_up": 1}},  # flat: the default backbone resnet50's options
            "(valid keys here for model.backbone resnet50: backbone, bn_preset, cifar_stem, dim,",
            ["width"],
        ),
        (
            {"objective": {"eta": {"made_up": 1}}},
            "(valid keys here for objective.eta.mode off: mode)",
            ["storage", "momentum"],
        ),
        (
            {"model": {"predictor": {"update_evry": 1}}},
            "did you mean 'model.predictor.update_every'? That one applies to "
            "model.predictor.kind directpred, directcopy only, and model.predictor.kind is mlp "
            "(valid keys here for model.predictor.kind mlp:",
            ["rho,"],
        ),
    ],
)
def test_an_unknown_key_lists_the_keys_of_the_chosen_kind(raw, message, not_listed):
    with pytest.raises(ConfigError) as exc:
        validate_config(raw)
    text = str(exc.value)
    assert message in text, text
    listed = text.split("(valid keys here", 1)[1]
    assert not [k for k in not_listed if k in listed], text


def test_preset_and_agreeing_flags_and_momentum_schedule_are_accepted():
    cfg = validate_config({"model": {"bn_preset": "all", "projector": {"bn_hidden": True}}})
    assert cfg.model.predictor.bn_output is True  # type: ignore[union-attr]
    cfg = validate_config({"model": {"target": {"momentum": 0.99, "schedule": "cosine"}}})
    assert cfg.model.target.schedule == "cosine"


def _one(study: StudyFile, profile: str, sets: list[str] | None = None):
    return expand_study(study, profile=profile, sets=sets)[0].config


def test_a_higher_layer_changing_the_kind_drops_the_lower_layers_options():
    # the cifar10 profile sets resnet18 + cifar_stem; a variant picks the small convnet
    study = StudyFile(name="s", variants={"v": {"model": {"backbone": "convnet_small"}}})
    cfg = _one(study, "cifar10")
    assert cfg.model.backbone.kind == "convnet_small"
    assert "cifar_stem" not in cfg.model_dump()["model"]
    # the quick profile sets width 32; --set picks a ResNet
    assert _one(StudyFile(name="s"), "quick", ["model.backbone=resnet18"]).model.backbone.kind == (
        "resnet18"
    )
    # a lower layer's eta.k does not survive a switch to moving_average
    base = {"objective": {"eta": {"mode": "cached", "k": 10}}}
    study = StudyFile(name="s", base=base, variants={"v": {"objective": {"eta": {"mode": "off"}}}})
    assert _one(study, "quick").objective.eta.mode == "off"
    # a preset in a higher layer replaces the flags of a lower one
    base = {"model": {"projector": {"bn_hidden": True}}}
    study = StudyFile(name="s", base=base, variants={"v": {"model": {"bn_preset": "none"}}})
    assert _one(study, "quick").model.projector.bn_hidden is False


def test_within_one_layer_an_option_of_another_kind_stays_an_error():
    with pytest.raises(ConfigError, match="model.cifar_stem applies to backbone"):
        _one(StudyFile(name="s"), "quick", ["model.cifar_stem=true"])
    # all --set expressions are one layer, whatever their order
    with pytest.raises(ConfigError, match="model.cifar_stem applies to backbone"):
        _one(
            StudyFile(name="s"),
            "cifar10",
            ["model.cifar_stem=true", "model.backbone=convnet_small"],
        )


def test_validate_does_not_import_torch_tensorboard_or_matplotlib():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "siamlab", "validate", "studies/stopgrad.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "siamlab.config.schema" in imported  # the import list was read
    assert not {"torch", "tensorboard", "matplotlib"} & {m.split(".")[0] for m in imported}
