import pytest
import torch

from siamlab.models.backbones import BACKBONES
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import create_model


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_resnet50_parameter_counts_match_the_reference_implementation():
    model = create_model(ModelConfig())  # the paper's ImageNet default
    assert _trainable(model.backbone) == 23_508_032
    assert _trainable(model.projector) == 12_591_104
    assert _trainable(model.predictor) == 2_100_224
    assert _trainable(model) == 38_199_360


def test_resnet18_parameter_counts_match_the_reference_implementation():
    model = create_model(ModelConfig(backbone="resnet18"))
    assert _trainable(model.backbone) == 11_176_512
    assert _trainable(model.projector) == 1_574_912
    assert _trainable(model) == 14_851_648


def test_cifar_stem_keeps_resolution():
    model = create_model(ModelConfig(backbone="resnet18", cifar_stem=True))
    assert model.backbone.body.conv1.kernel_size == (3, 3)
    assert isinstance(model.backbone.body.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_forward(name):
    extra = {"width": 4} if name == "convnet_small" else {}
    cfg = ModelConfig(backbone=name, dim=32, projector={"layers": 2, "hidden_dim": 32}, **extra)
    model = create_model(cfg)
    x = torch.randn(4, 3, 32, 32)
    out = model(x, x)
    assert out.h1.shape == (4, model.backbone.feature_dim)
    assert out.z1.shape == out.p2.shape == (4, 32)
    # one shared encoder: the same view gives the same h, z, p on both branches
    for a, b in ((out.h1, out.h2), (out.z1, out.z2), (out.p1, out.p2)):
        torch.testing.assert_close(a, b)
    model.eval()  # the chain h -> z = projector(h) -> p = predictor(z), as Fig. 1
    out = model(x, torch.randn(4, 3, 32, 32))
    torch.testing.assert_close(out.z1, model.projector(out.h1))
    torch.testing.assert_close(out.p2, model.predictor(out.z2))


def test_projector_output_is_batch_standardised_in_train_mode():
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=16)).train()
    z = model.embed(torch.randn(32, 3, 8, 8)).z
    assert torch.allclose(z.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(z.var(0, unbiased=False), torch.ones(16), atol=1e-3)


def test_predictor_is_a_bottleneck_with_output_bias_and_no_output_bn():
    model = create_model(ModelConfig(backbone="convnet_small", width=4, dim=64))
    first, last = model.predictor[0], model.predictor[-1]
    assert first.out_features == 16 and first.bias is None
    assert isinstance(last, torch.nn.Linear) and last.bias is not None
