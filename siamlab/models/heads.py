"""Projection and prediction MLPs, exactly as in the paper and its reference code.

Paper Sec. 3: "The projection MLP (in f) has BN applied to each fully-connected (fc)
layer, including its output fc. Its output fc has no ReLU. The hidden fc is 2048-d.
This MLP has 3 layers." and "The prediction MLP (h) has BN applied to its hidden fc
layers. Its output fc does not have BN or ReLU. This MLP has 2 layers."
"""

from torch import nn

from siamlab.models.config import PredictorConfig, ProjectorConfig


def _linear_bn_relu(d_in: int, d_out: int) -> list[nn.Module]:
    return [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]


def create_projector(cfg: ProjectorConfig, in_dim: int, out_dim: int) -> nn.Sequential:
    """Projector: [Linear-BN-ReLU] x (layers - 1), then Linear-BN(affine=False).

    The output Linear has no bias: the reference code keeps one but freezes it, and
    the following BN cancels it anyway (NOTES.md), so dropping it is equivalent.

    Args:
        cfg: number of layers and hidden width.
        in_dim: backbone feature dimension.
        out_dim: the output dimension d.
    """
    hidden = cfg.hidden_dim or in_dim
    layers: list[nn.Module] = _linear_bn_relu(in_dim, hidden)
    if cfg.layers == 3:
        layers += _linear_bn_relu(hidden, hidden)
    layers += [nn.Linear(hidden, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False)]
    return nn.Sequential(*layers)


def create_predictor(cfg: PredictorConfig, dim: int) -> nn.Sequential:
    """Predictor: Linear(d, d/4, no bias)-BN-ReLU, Linear(d/4, d) with bias, no BN."""
    hidden = cfg.hidden_dim or max(dim // 4, 1)
    return nn.Sequential(*_linear_bn_relu(dim, hidden), nn.Linear(hidden, dim))
