import torch

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
