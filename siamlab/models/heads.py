"""Projection and prediction MLPs, exactly as in the paper and its reference code.

Paper Sec. 3: "The projection MLP (in f) has BN applied to each fully-connected (fc)
layer, including its output fc. Its output fc has no ReLU. The hidden fc is 2048-d.
This MLP has 3 layers." and "The prediction MLP (h) has BN applied to its hidden fc
layers. Its output fc does not have BN or ReLU. This MLP has 2 layers."
Where Table 3 removes a BN, the Linear before it gets a bias (a bias is redundant
only in front of BN).
"""

from torch import nn

from siamlab.models.config import PredictorConfig, ProjectorConfig


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


def create_predictor(cfg: PredictorConfig, dim: int) -> nn.Module:
    """Predictor h by kind; fixed at its random init when ``trainable`` is False.

    ``mlp``: Linear(d, d/4)-BN-ReLU, Linear(d/4, d) with bias, no BN (paper Sec. 3).
    ``linear``: one Linear(d, d) (the DirectPred setting). ``none``: identity (Table 1a).
    """
    if cfg.kind == "none":
        return nn.Identity()
    if cfg.kind == "linear":
        head: nn.Module = nn.Sequential(*_linear_bn(dim, dim, cfg.bn_output))
    else:
        hidden = cfg.hidden_dim or max(dim // 4, 1)
        head = nn.Sequential(
            *_linear_bn(dim, hidden, cfg.bn_hidden),
            nn.ReLU(inplace=True),
            *_linear_bn(hidden, dim, cfg.bn_output),
        )
    if not cfg.trainable:
        head.requires_grad_(False)
    return head
