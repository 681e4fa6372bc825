"""Every registered component, timm style: config names == builder names, and each entry works."""

import pytest
import torch

from siamlab.config.objective import SIMILARITY_NAMES
from siamlab.config.validation import validate_config
from siamlab.data.dataset_config import DATASET_CONFIGS
from siamlab.data.sources import LOADERS
from siamlab.errors import ConfigError
from siamlab.eta.build import ETA_PROVIDERS
from siamlab.eta.config import ETA_CONFIGS
from siamlab.models.backbone_config import BACKBONE_CONFIGS
from siamlab.models.backbones import BACKBONES, create_backbone
from siamlab.models.heads import PREDICTORS, create_predictor
from siamlab.models.predictor_config import PREDICTOR_CONFIGS
from siamlab.models.set_predictor import SetPredictor
from siamlab.objectives import SIMILARITIES
from siamlab.registry import Registry


@pytest.mark.parametrize(
    ("configs", "builders"),
    [
        (BACKBONE_CONFIGS.names(), BACKBONES.names()),
        (PREDICTOR_CONFIGS.names(), PREDICTORS.names()),
        (SIMILARITY_NAMES.names(), list(SIMILARITIES)),
        (ETA_CONFIGS.names(), list(ETA_PROVIDERS)),
        (DATASET_CONFIGS.names(), LOADERS.names()),
    ],
)
def test_config_names_are_the_builder_names(configs, builders):
    assert sorted(configs) == sorted(builders) and configs


def test_unknown_name_lists_the_registered_ones():
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    registry.add("b", 2)
    assert registry.get("b") == 2
    with pytest.raises(ConfigError, match="unknown widget 'c'; registered: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="twice"):
        registry.add("a", 3)


@pytest.mark.parametrize("name", BACKBONE_CONFIGS.names())
def test_every_backbone_gives_its_declared_feature_dim(name):
    options = {"width": 4} if name == "convnet_small" else {}
    cfg = BACKBONE_CONFIGS.get(name).model_validate({"kind": name, **options})
    torch.manual_seed(0)
    backbone = create_backbone(cfg).eval()
    with torch.no_grad():
        h = backbone(torch.randn(2, 3, 32, 32))  # (B, C)
    assert h.shape == (2, cfg.feature_dim) == (2, backbone.feature_dim)


@pytest.mark.parametrize("name", PREDICTOR_CONFIGS.names())
@pytest.mark.parametrize("trainable", [True, False])
def test_every_predictor_maps_b_d_to_b_d(name, trainable):
    fields = PREDICTOR_CONFIGS.get(name).model_fields
    if not trainable and "trainable" not in fields:
        pytest.skip(f"predictor {name} has no parameters")
    raw = {"kind": name, **({"trainable": False} if not trainable else {})}
    head = create_predictor(PREDICTOR_CONFIGS.get(name).model_validate(raw), 16).eval()
    z = torch.randn(8, 16)  # (B, d)
    p = head(z)
    assert p.shape == (8, 16)
    n_trainable = sum(q.numel() for q in head.parameters() if q.requires_grad)
    if name == "none":
        assert torch.equal(p, z) and not list(head.parameters())
    elif isinstance(head, SetPredictor):  # set from F, not trained: W_p is a buffer
        assert not list(head.parameters())
        torch.testing.assert_close(p, z @ head.weight.T)
        assert not torch.allclose(p, z)
    else:
        assert (n_trainable > 0) == trainable and not torch.allclose(p, z)


@pytest.mark.parametrize("name", SIMILARITY_NAMES.names())
def test_every_similarity_is_smallest_at_identical_inputs(name):
    d = SIMILARITIES[name]
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    same = d(z, z)
    if name == "cosine":
        assert same.item() == pytest.approx(-1.0)
    for _ in range(5):  # D(p, z) >= D(z, z) for other p (Cauchy-Schwarz / Gibbs)
        assert d(torch.randn(16, 8), z) >= same


def _round_trip(raw):
    cfg = validate_config(raw)
    again = validate_config(cfg.model_dump(mode="json"))
    assert again == cfg
    return cfg


@pytest.mark.parametrize("name", DATASET_CONFIGS.names())
def test_every_dataset_kind_validates_and_refuses_other_kinds_options(name):
    cfg = _round_trip({"data": {"dataset": name}})
    assert cfg.data.dataset.kind == name
    assert cfg.model_dump(mode="json")["data"]["dataset"] == name  # flat, as written
    fields = set(DATASET_CONFIGS.get(name).model_fields)
    for key in ("root", "name", "download", "max_corrupt_fraction"):
        if key not in fields:
            with pytest.raises(ConfigError, match=f"data.{key} applies to dataset .* only "):
                validate_config({"data": {"dataset": name, key: None}})


@pytest.mark.parametrize("mode", ETA_CONFIGS.names())
def test_every_eta_mode_validates_and_refuses_other_modes_options(mode):
    cfg = _round_trip({"objective": {"eta": {"mode": mode}}})
    assert cfg.objective.eta.mode == mode
    fields = set(ETA_CONFIGS.get(mode).model_fields)
    for key, value in {"k": 2, "momentum": 0.5, "storage": "memmap"}.items():
        if key not in fields:
            msg = rf"objective.eta.{key} applies to eta.mode .* only \(eta.mode is {mode}\)"
            with pytest.raises(ConfigError, match=msg):
                validate_config({"objective": {"eta": {"mode": mode, key: value}}})
