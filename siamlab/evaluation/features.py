"""Frozen-backbone feature extraction and the check that the backbone stayed frozen.

SimSiam paper, "Linear evaluation": the classifier is trained on the frozen pool5 features h
of the backbone, in eval mode, so that BN running statistics are not revised either. The
reference code asserts afterwards that no backbone weight changed (``sanity_check`` in
``main_lincls.py``); :func:`assert_unchanged` is that check, over parameters *and* buffers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from siamlab.errors import SiamlabError
from siamlab.preemption import leave_signals_to_the_main_process


class BackboneChangedError(SiamlabError):
    """The frozen backbone's weights or BN statistics changed during an evaluation."""


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    desc: str = "features",
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Backbone features of every sample of ``dataset``, in order, with the model in eval mode.

    Args:
        backbone: maps images (B, 3, H, W) to features (B, C).
        dataset: yields ``(image, label, ...)`` tuples.
        device: where the backbone runs.
        batch_size: images per forward pass.
        num_workers: DataLoader worker processes.
        desc: progress bar label.
        progress: show a tqdm progress bar.

    Returns:
        Features (N, C) float32 and labels (N,) int64, both on CPU.
    """
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=leave_signals_to_the_main_process,
    )
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            x, y = batch[0], batch[1]
            feats.append(backbone(x.to(device)).float().cpu())  # (B, C)
            labels.append(torch.as_tensor(y, dtype=torch.long))  # (B,)
    finally:
        backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """A CPU copy of every parameter and buffer of ``module`` (its state dict)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def assert_unchanged(before: dict[str, Tensor], module: nn.Module, what: str = "backbone") -> None:
    """Fail loudly when any entry of ``module``'s state differs from ``before``.

    Raises:
        BackboneChangedError: naming the changed entries (exact comparison, as the
            reference code's ``sanity_check``).
    """
    after = module.state_dict()
    changed = [k for k, v in before.items() if k not in after or not torch.equal(after[k].cpu(), v)]
    changed += [k for k in after if k not in before]
    if changed:
        raise BackboneChangedError(
            f"the frozen {what} changed during evaluation ({len(changed)} entries, e.g. "
            f"{changed[:5]}); the linear-evaluation protocol forbids it. This is a bug: "
            "please report it."
        )
