"""Projection and prediction MLPs, exactly as in the paper and its reference code.

Paper Sec. 3: "The projection MLP (in f) has BN applied to each fully-connected (fc)
layer, including its output fc. Its output fc has no ReLU. The hidden fc is 2048-d.
This MLP has 3 layers." and "The prediction MLP (h) has BN applied to its hidden fc
layers. Its output fc does not have BN or ReLU. This MLP has 2 layers."
Where Table 3 removes a BN, the Linear before it gets a bias (a bias is redundant
only in front of BN).
"""

from collections.abc import Callable

from torch import nn

from siamlab.models.config import ProjectorConfig
from siamlab.models.predictor_config import (
    DirectCopyConfig,
    DirectPredConfig,
    LinearPredictorConfig,
    MlpPredictorConfig,
    PredictorConfig,
)
from siamlab.models.set_predictor import DirectCopy, DirectPred
from siamlab.registry import Registry


def _linear_bn(d_in: int, d_out: int, bn: bool, affine: bool = True) -> list[nn.Module]:
    """Linear (bias only without BN), then BN if asked."""
    layers: list[nn.Module] = [nn.Linear(d_in, d_out, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm1d(d_out, affine=affine))
    return layers


def create_projector(cfg: ProjectorConfig, in_dim: int, out_dim: int) -> nn.Sequential:
    """Projector: [Linear-BN-ReLU] x (layers - 1), then Linear-BN(affine=False).

    The output Linear has no bias in front of BN: the reference code keeps one but
    freezes it, and the next BN cancels it anyway (docs/paper-recipes.md#projector-output-bias).

    Args:
        cfg: layers, hidden width and BN flags.
        in_dim: backbone feature dimension.
        out_dim: the output dimension d.
    """
    hidden = cfg.hidden_dim or in_dim
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(cfg.layers - 1):
        layers += [*_linear_bn(d, hidden, cfg.bn_hidden), nn.ReLU(inplace=True)]
        d = hidden
    layers += _linear_bn(d, out_dim, cfg.bn_output, cfg.bn_output_affine)
    return nn.Sequential(*layers)


PREDICTORS: Registry[Callable[[PredictorConfig, int], nn.Module]] = Registry("predictor")


@PREDICTORS.register("mlp")
def _mlp(cfg: PredictorConfig, dim: int) -> nn.Module:
    """Linear(d, d/4)-BN-ReLU, Linear(d/4, d) with bias, no BN (paper Sec. 3)."""
    assert isinstance(cfg, MlpPredictorConfig)
    hidden = cfg.hidden_dim or max(dim // 4, 1)
    return _frozen_unless(
        cfg.trainable,
        nn.Sequential(
            *_linear_bn(dim, hidden, cfg.bn_hidden),
            nn.ReLU(inplace=True),
            *_linear_bn(hidden, dim, cfg.bn_output),
        ),
    )


@PREDICTORS.register("linear")
def _linear(cfg: PredictorConfig, dim: int) -> nn.Module:
    """One Linear(d, d) (the DirectPred setting)."""
    assert isinstance(cfg, LinearPredictorConfig)
    return _frozen_unless(cfg.trainable, nn.Sequential(*_linear_bn(dim, dim, cfg.bn_output)))


@PREDICTORS.register("none")
def _identity(cfg: PredictorConfig, dim: int) -> nn.Module:
    """No predictor (Table 1a)."""
    return nn.Identity()


@PREDICTORS.register("directpred")
def _directpred(cfg: PredictorConfig, dim: int) -> nn.Module:
    """A d x d linear head set from the EMA correlation of z (Tian et al. 2021), not trained."""
    assert isinstance(cfg, DirectPredConfig)
    return DirectPred(dim, cfg.rho, cfg.eps, cfg.update_every)


@PREDICTORS.register("directcopy")
def _directcopy(cfg: PredictorConfig, dim: int) -> nn.Module:
    """W_p = F / ||F|| + eps I from the EMA correlation of z (Wang et al. 2021), not trained."""
    assert isinstance(cfg, DirectCopyConfig)
    return DirectCopy(dim, cfg.rho, cfg.eps, cfg.update_every, cfg.norm)


def _frozen_unless(trainable: bool, head: nn.Module) -> nn.Module:
    """Fix ``head`` at its random init when not ``trainable`` (Table 1b)."""
    if not trainable:
        head.requires_grad_(False)
    return head


def create_predictor(cfg: PredictorConfig, dim: int) -> nn.Module:
    """Predictor h (B, d) -> (B, d), built by the builder registered as ``cfg.kind``."""
    return PREDICTORS.get(cfg.kind)(cfg, dim)
