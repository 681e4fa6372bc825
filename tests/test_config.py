from pathlib import Path

import pytest

from siamlab.config.overrides import parse_set
from siamlab.config.study import StudyFile, expand_study, read_study
from siamlab.config.validation import validate_config
from siamlab.errors import ConfigError


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(ConfigError) as exc:
        validate_config({"optim": {"base_lrr": 0.1}})
    assert "optim.base_lrr" in str(exc.value) and "'optim.base_lr'" in str(exc.value)


def test_nested_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="model.projector.layer.*layers"):
        validate_config({"model": {"projector": {"layer": 2}}})


def test_wrong_type_names_the_path():
    with pytest.raises(ConfigError, match="train.epochs"):
        validate_config({"train": {"epochs": "many"}})


def test_out_of_range_value():
    with pytest.raises(ConfigError, match="optim.momentum"):
        validate_config({"optim": {"momentum": 1.5}})


def test_unknown_backbone_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'; registered: .*resnet50"):
        validate_config({"model": {"backbone": "vgg"}})


def test_parse_set_types():
    assert parse_set("optim.base_lr=0.1") == {"optim": {"base_lr": 0.1}}
    assert parse_set("objective.stop_grad=false") == {"objective": {"stop_grad": False}}
    assert parse_set("data.augment.crop_scale=[0.2, 1.0]") == {
        "data": {"augment": {"crop_scale": [0.2, 1.0]}}
    }
    with pytest.raises(ConfigError):
        parse_set("novalue")


def test_layering_default_profile_base_variant_set():
    study = StudyFile(
        name="s",
        base={"optim": {"base_lr": 0.2}},
        variants={"a": {"train": {"epochs": 3}}, "b": None},
        seeds=[0, 1],
    )
    runs = expand_study(study, sets=["train.epochs=7"], only=["a"])
    assert [(r.variant, r.seed) for r in runs] == [("a", 0), ("a", 1)]
    cfg = runs[0].config
    assert cfg.optim.base_lr == 0.2  # base over profile
    assert cfg.train.epochs == 7  # --set over variant
    assert cfg.model.backbone.kind == "convnet_small"  # quick profile over defaults
    assert cfg.optim.momentum == 0.9  # paper default
    assert expand_study(study, profile="cifar10")[0].config.model.backbone.kind == "resnet18"


def test_per_profile_applies_at_its_profile_only_above_base_below_variants():
    study = StudyFile(
        name="s",
        base={"optim": {"base_lr": 0.2, "weight_decay": 1e-3}},
        per_profile={"quick": {"optim": {"base_lr": 0.3}}},
        variants={"a": None, "b": {"optim": {"base_lr": 0.4}}},
    )
    a, b = expand_study(study)
    assert a.config.optim.base_lr == 0.3 and a.config.optim.weight_decay == 1e-3
    assert b.config.optim.base_lr == 0.4  # the variant still wins
    assert expand_study(study, profile="cifar10")[0].config.optim.base_lr == 0.2
    typo = StudyFile(name="s", per_profile={"quik": {"optim": {"base_lr": 0.3}}})
    with pytest.raises(ConfigError, match="unknown profile 'quik'"):
        expand_study(typo)


def test_bad_variant_fails_the_whole_study_before_work():
    study = StudyFile(name="s", variants={"ok": {}, "bad": {"objective": {"stopgrad": True}}})
    with pytest.raises(ConfigError, match="(?s)variant 'bad'.*objective.stop_grad"):
        expand_study(study)


def test_unknown_profile_and_variant():
    with pytest.raises(ConfigError, match="quick"):
        expand_study(StudyFile(name="s"), profile="huge")
    with pytest.raises(ConfigError, match="default"):
        expand_study(StudyFile(name="s"), only=["nope"])


def test_study_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_study(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_study(bad)
    extra = tmp_path / "extra.yaml"
    extra.write_text("name: x\nvariant: {}\n")
    with pytest.raises(ConfigError, match="variant"):
        read_study(extra)


def test_paper_defaults():
    cfg = validate_config({})
    assert (cfg.optim.base_lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.05, 0.9, 1e-4)
    assert (cfg.train.batch_size, cfg.model.dim, cfg.model.backbone.kind) == (512, 2048, "resnet50")
    assert cfg.objective.stop_grad is True


@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (["objective.eta.mode=cached"], "stored constant"),
        (["objective.eta.mode=moving_average", "model.predictor.kind=none"], "stored constant"),
        (["model.target.momentum=0.99"], "no gradient by construction"),
    ],
)
def test_stop_grad_false_is_refused_where_it_cannot_mean_anything(sets, reason):
    study = StudyFile(name="s")
    expand_study(study, sets=sets)  # fine with stop-gradient
    with pytest.raises(ConfigError, match=f"(?s)objective.stop_grad=false.*{reason}"):
        expand_study(study, sets=[*sets, "objective.stop_grad=false"])
    assert not expand_study(study, sets=["objective.stop_grad=false"])[0].config.objective.stop_grad


def test_validate_refuses_stop_grad_false_with_cached_eta():
    from typer.testing import CliRunner

    from siamlab.cli import app

    study = str(Path(__file__).resolve().parents[1] / "studies" / "stopgrad.yaml")
    sets = ["--set", "objective.stop_grad=false", "--set", "objective.eta.mode=cached"]
    result = CliRunner().invoke(app, ["validate", study, *sets])
    assert result.exit_code == 2 and "stored constant" in result.output


def test_an_infinite_lr_a_device_typo_and_a_home_root_are_handled():
    from siamlab.errors import ConfigError as Err
    from siamlab.train.device import select_device

    study = StudyFile(name="s")
    with pytest.raises(Err, match="optim.base_lr: Input should be a finite number"):
        expand_study(study, sets=["optim.base_lr=.inf"])
    with pytest.raises(Err, match="device 'gpu' is not one of auto, cpu, cuda"):
        select_device("gpu")
    (run,) = expand_study(study, sets=["output.root=~/siamlab-results"])
    assert run.directory() == Path.home() / "siamlab-results" / "s" / "default" / "seed0"
