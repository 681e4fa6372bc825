"""Write a siamlab model in the reference implementation's checkpoint format.

The inverse of :func:`~siamlab.evaluation.checkpoints.reference_to_siamlab`: the layout of
``main_simsiam.py`` (facebookresearch/simsiam), a dict with ``epoch``, ``arch`` and
``state_dict`` whose keys are ``module.encoder.<torchvision ResNet keys>``, the projector
in ``module.encoder.fc.<i>`` and the predictor in ``module.predictor.<i>``. The reference
projector's output Linear has a bias that siamlab's lacks (the BN after it cancels it;
docs/paper-recipes.md#projector-output-bias): it is written as zeros, so the running mean
needs no folding and reading the file back gives the same network, bit for bit.

Only what the format can hold is written: a ResNet backbone, the projector and an MLP
(or no) predictor; a momentum target is not part of the format.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from siamlab.errors import ResultsError
from siamlab.evaluation.checkpoints import infer_resnet, reference_to_siamlab


def siamlab_to_reference(model: nn.Module) -> dict[str, Tensor]:
    """The reference ``state_dict`` (keys with the ``module.`` prefix) of a siamlab model.

    Raises:
        ResultsError: the model has no ResNet backbone, or a predictor the format lacks.
    """
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    body = {k.removeprefix("backbone.body."): v for k, v in sd.items() if k.startswith("backbone.")}
    if "conv1.weight" not in body:
        raise ResultsError(
            "the reference format holds a torchvision ResNet encoder; this model's backbone "
            f"has keys {sorted(body)[:4]}: write it as a siamlab checkpoint instead"
        )
    infer_resnet(body)  # a depth siamlab can read back
    out = {f"module.encoder.{k}": v for k, v in body.items()}
    projector = {
        k.removeprefix("projector."): v for k, v in sd.items() if k.startswith("projector.")
    }
    out |= {f"module.encoder.fc.{k}": v for k, v in projector.items()}
    last = max(int(k.split(".")[0]) for k, v in projector.items() if v.ndim == 2)
    width = projector[f"{last}.weight"].shape[0]
    out[f"module.encoder.fc.{last}.bias"] = torch.zeros(
        width, dtype=projector[f"{last}.weight"].dtype
    )
    out |= {f"module.{k}": v for k, v in sd.items() if k.startswith("predictor.")}
    _check_round_trip(out, sd)
    return out


def _check_round_trip(reference: dict[str, Tensor], sd: dict[str, Tensor]) -> None:
    """Raise unless reading ``reference`` back gives the keys and shapes of ``sd``."""
    wanted = {k: tuple(v.shape) for k, v in sd.items() if not k.startswith("target.")}
    try:
        _, back = reference_to_siamlab({k.removeprefix("module."): v for k, v in reference.items()})
    except (ResultsError, KeyError, ValueError) as exc:
        raise ResultsError(f"this model cannot be written in the reference format: {exc}") from exc
    got = {k: tuple(v.shape) for k, v in back.items()}
    if got != wanted:
        odd = sorted(set(got.items()) ^ set(wanted.items()))[:4]
        raise ResultsError(
            "this model cannot be written in the reference format (only a ResNet, the "
            f"projector and an MLP predictor or none fit it); mismatched entries: {odd}"
        )


def save_reference(model: nn.Module, path: str | Path, epoch: int, arch: str = "") -> Path:
    """Write ``model`` as ``main_simsiam.py`` does: ``{"epoch", "arch", "state_dict"}``.

    Args:
        model: a siamlab :class:`~siamlab.models.siamese.SiameseNet` with a ResNet backbone.
        path: the file (the reference names them ``checkpoint_%04d.pth.tar``).
        epoch: epochs completed (the reference stores ``epoch + 1`` after 0-based ``epoch``).
        arch: the ``arch`` entry (default: the ResNet read off the weights).
    """
    sd = siamlab_to_reference(model)
    body = {k.removeprefix("module.encoder."): v for k, v in sd.items() if "encoder.fc." not in k}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "arch": arch or infer_resnet(body), "state_dict": sd}, path)
    return path
