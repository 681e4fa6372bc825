"""The studies run the paper's settings at every profile (from resolved configs, no training)."""

from pathlib import Path

import pytest

from siamlab.config.profiles import PROFILES
from siamlab.config.study import StudyFile, expand_study, read_study
from siamlab.errors import ConfigError

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
EM = next(p for p in STUDIES if p.stem == "em_hypothesis")

# Runs whose predictor lr decays with the encoder's, as the paper's row does: Table 1 (c)'s
# baseline, and Fig. 2, which precedes Table 1 (its 67.7 is that baseline's number).
COSINE_PREDICTOR_LR = {
    ("predictor", "lr_cosine"),
    ("stopgrad", "stop_grad"),
    ("stopgrad", "no_stop_grad"),
}

# Training images per dataset kind: sklearn digits' 80% train split, CIFAR-10, ImageNet-1k.
TRAIN_IMAGES = {"digits": 1437, "cifar10": 50_000, "imagefolder": 1_281_167}


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_predictor_lr_is_constant_after_table_1(path, profile):
    runs = expand_study(read_study(path), profile)
    got = {(r.study, r.variant): r.config.optim.predictor_lr for r in runs}
    want = {key: "cosine" if key in COSINE_PREDICTOR_LR else "constant" for key in got}
    assert got == want


def test_the_default_predictor_lr_is_constant():
    runs = expand_study(StudyFile(name="s"), "quick")
    assert runs[0].config.optim.predictor_lr == "constant"


def _steps_per_epoch(config) -> int:
    n = TRAIN_IMAGES[config.data.dataset.kind]
    if config.data.train_limit is not None:
        n = min(n, config.data.train_limit)
    return n // config.train.batch_size  # the training sampler drops the last partial batch


@pytest.mark.parametrize("profile", list(PROFILES))
def test_em_hypothesis_keeps_the_papers_order_of_k(profile):
    runs = {r.variant: r.config for r in expand_study(read_study(EM), profile)}
    cached = {v: c for v, c in runs.items() if c.objective.eta.mode == "cached"}
    assert list(cached) == ["k_small", "k_large", "k_epoch"]
    epoch = {_steps_per_epoch(c) for c in cached.values()}
    assert len(epoch) == 1  # one data size and batch for every variant
    (steps,) = epoch
    ks = [cached[v].objective.eta.k for v in ("k_small", "k_large")]
    assert 1 < ks[0] < ks[1] < steps  # 1 < 10 < 100 << one epoch, as Sec. 5.2
    assert cached["k_epoch"].objective.eta.k == "epoch"
    # the paper's steps exactly at its own scale (ImageNet, batch 512: 2,502 steps)
    if profile == "imagenet":
        assert (ks, steps) == ([10, 100], 2502)


def test_em_hypothesis_paper_refs_give_the_steps_that_differ():
    study = read_study(EM)
    for variant in ("k_small", "k_large"):
        ref = study.paper[variant].ref  # type: ignore[union-attr]
        for profile in PROFILES:
            config = expand_study(study, profile, only=[variant])[0].config
            k, steps = config.objective.eta.k, _steps_per_epoch(config)
            exact = f"{k} steps at {profile}"  # the paper's step count, said as such
            assert exact in ref or f"{k} = {k / steps:.2f} epoch at {profile}" in ref


def _study(variant: dict) -> StudyFile:
    return StudyFile(name="s", variants={"v": variant})


def test_variant_per_profile_applies_after_the_variant_at_that_profile_only():
    study = _study(
        {
            "train": {"epochs": 7, "batch_size": 64},
            "per_profile": {"quick": {"train": {"epochs": 3}}},
        }
    )
    quick = expand_study(study, "quick")[0].config.train
    cifar = expand_study(study, "cifar10")[0].config.train
    assert (quick.epochs, quick.batch_size) == (3, 64)
    assert (cifar.epochs, cifar.batch_size) == (7, 64)
    # --set stays the top layer
    top = expand_study(study, "quick", sets=["train.epochs=5"])[0].config.train
    assert top.epochs == 5


@pytest.mark.parametrize(
    ("per_profile", "message"),
    [
        ({"quik": {"train": {"epochs": 3}}}, "variant 'v': per_profile: unknown profile 'quik'"),
        ({"quick": 3}, "variant 'v': per_profile must map profile names to partial configs"),
        ([1], "variant 'v': per_profile must map profile names to partial configs"),
    ],
)
def test_variant_per_profile_is_checked(per_profile, message):
    with pytest.raises(ConfigError, match=message):
        expand_study(_study({"per_profile": per_profile}), "imagenet")


def test_a_bad_variant_per_profile_fails_even_when_another_variant_is_run():
    study = StudyFile(name="s", variants={"ok": {}, "bad": {"per_profile": {"cifar": {}}}})
    with pytest.raises(ConfigError, match="variant 'bad'"):
        expand_study(study, "quick", only=["ok"])


def test_a_variant_with_profiles_runs_at_those_profiles_only():
    study = StudyFile(name="s", variants={"all": {}, "big": {"profiles": ["cifar10", "imagenet"]}})
    assert [r.variant for r in expand_study(study, "quick")] == ["all"]
    assert [r.variant for r in expand_study(study, "imagenet")] == ["all", "big"]
    with pytest.raises(ConfigError, match="variant 'big' runs only at profile.*--profile cifar10"):
        expand_study(study, "quick", only=["big"])
    alone = StudyFile(name="s", variants={"big": {"profiles": ["imagenet"]}})
    with pytest.raises(ConfigError, match="no variant of study 's' runs at profile 'quick'"):
        expand_study(alone, "quick")
    for bad, message in (
        (["imagenett"], "variant 'v': profiles: unknown profile 'imagenett'"),
        ("imagenet", "variant 'v': profiles must be a list of profile names"),
        ([], "variant 'v': profiles must be a list of profile names"),
    ):
        with pytest.raises(ConfigError, match=message):
            expand_study(StudyFile(name="s", variants={"v": {"profiles": bad}}), "imagenet")


def test_the_paper_rows_are_run_at_their_settings():
    """Table 2's 2048 and 4096 at the scales that hold them; Table 3 (a)'s warm-up; the
    imagenet profile's lr set once per epoch, as the reference code."""
    folder = STUDIES[0].parent
    sizes = read_study(folder / "batch_size.yaml")
    at = {p: {r.variant: r.config for r in expand_study(sizes, p)} for p in ("quick", "imagenet")}
    assert "b4096" not in at["quick"] and at["imagenet"]["b4096"].train.batch_size == 4096
    assert all(at["imagenet"][v].optim.warmup_epochs == 10 for v in ("b1024", "b2048", "b4096"))
    assert at["imagenet"]["b512"].optim.warmup_epochs == 0
    bn = read_study(folder / "batchnorm.yaml")
    warmup = {p: expand_study(bn, p, only=["none"])[0].config.optim.warmup_epochs for p in PROFILES}
    assert warmup == {"quick": 2, "cifar10": 10, "imagenet": 10}
    update = {p: expand_study(bn, p)[0].config.optim.update for p in PROFILES}
    assert update == {"quick": "step", "cifar10": "step", "imagenet": "epoch"}  # as the code


def test_variant_per_profile_keys_are_validated_as_config():
    study = _study({"per_profile": {"quick": {"train": {"epochz": 3}}}})
    with pytest.raises(ConfigError, match="epochz"):
        expand_study(study, "quick")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"name: t\nvariants: {}\n", "variants: Dictionary should have at least 1 item"),
        (b"name: t\nbse: {}\n", "bse: not a study key; did you mean 'base'\\? a study has: name"),
        (b"\xff\xfe\x00n", "is not a text file: a study is a YAML file"),
    ],
)
def test_a_broken_study_file_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=message):
        expand_study(read_study(path))
