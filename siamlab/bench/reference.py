"""A plain SimSiam training step, written like the authors' minimal loop, as a yardstick.

Built independently of :mod:`siamlab.models`: the encoder is a torchvision model whose
``fc`` becomes the projection MLP and the predictor is a bottleneck MLP, exactly as the
reference ``simsiam/builder.py``; the step is ``main_simsiam.py``'s inner loop (negative
``nn.CosineSimilarity``, SGD with momentum and weight decay, ``loss.item()`` each step),
in fp32, with no hooks and no diagnostics. Only the sizes (backbone, d, widths, CIFAR
stem) come from the config, so both loops train the same network.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from siamlab.config.schema import RunConfig
from siamlab.models.backbone_config import ConvnetSmallConfig, ResNetConfig
from siamlab.models.predictor_config import MlpPredictorConfig


class ReferenceSimSiam(nn.Module):
    """The reference builder: encoder = backbone + projector (as its ``fc``), predictor.

    Args:
        base_encoder: builds the backbone given ``num_classes`` (a torchvision constructor).
        dim: feature dimension d.
        pred_dim: hidden width of the predictor.
        proj_layers: 3 (ImageNet recipe) or 2 (CIFAR recipe).
        proj_hidden: hidden width of the projector; None = the backbone's width.
    """

    def __init__(
        self,
        base_encoder: nn.Module,
        dim: int,
        pred_dim: int,
        proj_layers: int = 3,
        proj_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = base_encoder
        fc = self.encoder.fc
        assert isinstance(fc, nn.Linear)
        prev_dim = fc.weight.shape[1]
        hidden = proj_hidden or prev_dim
        layers: list[nn.Module] = []
        d = prev_dim
        for _ in range(proj_layers - 1):
            layers += [nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(True)]
            d = hidden
        out = nn.Linear(d, dim)
        out.bias.requires_grad = False  # hack: not use bias as it is followed by BN
        self.encoder.fc = nn.Sequential(*layers, out, nn.BatchNorm1d(dim, affine=False))
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),  # hidden layer
            nn.Linear(pred_dim, dim),  # output layer
        )

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """p1, p2 (B, d) and the detached targets z1, z2 (B, d)."""
        z1 = self.encoder(x1)  # NxC
        z2 = self.encoder(x2)  # NxC
        p1 = self.predictor(z1)  # NxC
        p2 = self.predictor(z2)  # NxC
        return p1, p2, z1.detach(), z2.detach()


class SmallConvNet(nn.Module):
    """The quick profile's convnet, plainly: 4 conv-BN-ReLU stages, pooling, an ``fc``."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, 1 if i == 0 else 2, 1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        return self.fc(self.features(x))


def reference_model(cfg: RunConfig) -> ReferenceSimSiam:
    """The reference network with the sizes of ``cfg.model`` (the paper's heads)."""
    m, b = cfg.model, cfg.model.backbone
    if isinstance(b, ConvnetSmallConfig):
        base: nn.Module = SmallConvNet(b.width, m.dim)
    else:
        assert isinstance(b, ResNetConfig)
        base = torchvision.models.__dict__[b.kind](
            num_classes=m.dim, zero_init_residual=b.zero_init_residual
        )
        if b.cifar_stem:
            base.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            base.maxpool = nn.Identity()
    hidden = m.predictor.hidden_dim if isinstance(m.predictor, MlpPredictorConfig) else None
    pred_dim = hidden or max(m.dim // 4, 1)
    return ReferenceSimSiam(base, m.dim, pred_dim, m.projector.layers, m.projector.hidden_dim)


def reference_loss(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """``main_simsiam.py``'s loss: -(cos(p1, z2) + cos(p2, z1)) / 2, batch means."""
    criterion = nn.CosineSimilarity(dim=1)
    p1, p2, z1, z2 = model(x1=x1, x2=x2)
    return -(criterion(p1, z2).mean() + criterion(p2, z1).mean()) * 0.5


class ReferenceStep:
    """``main_simsiam.py``'s training step on a :class:`ReferenceSimSiam`.

    Args:
        cfg: sizes and the optimiser's lr (base_lr x B / 256), momentum, weight decay.
        device: where the model lives.
    """

    def __init__(self, cfg: RunConfig, device: torch.device) -> None:
        self.device = device
        self.model = reference_model(cfg).to(device)
        init_lr = cfg.optim.base_lr * cfg.train.batch_size / 256
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            init_lr,
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
        )

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor) -> float:
        """One SGD step on views (B, 3, H, W); returns the loss."""
        self.model.train()
        x1 = x1.to(self.device, non_blocking=True)
        x2 = x2.to(self.device, non_blocking=True)
        loss = reference_loss(self.model, x1, x2)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()
