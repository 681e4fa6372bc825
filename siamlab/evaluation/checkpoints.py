"""Load any pre-trained checkpoint into a :class:`~siamlab.models.siamese.SiameseNet`.

Three formats are recognised:

- ``siamlab``: ``checkpoints/last.pt`` of a siamlab run (a dict with ``model`` and ``config``).
- ``reference``: ``main_simsiam.py`` of the authors' reference implementation
  (facebookresearch/simsiam): a dict with ``state_dict`` whose keys are
  ``module.encoder.<torchvision ResNet keys>``, the projector in ``module.encoder.fc.<i>``
  and the predictor in ``module.predictor.<i>``. The Sequential indices are the same as
  siamlab's heads. The projector's output Linear keeps a (frozen) bias there; siamlab's has
  none, since the next BN(affine=False) cancels it (docs/paper-recipes.md#projector-output-bias). In
  train mode the batch mean removes it exactly; in eval mode BN subtracts its running mean,
  so the bias is folded into it: ``running_mean' = running_mean - bias``.
- ``torchvision``: a plain ResNet state dict (``conv1.weight``, ``layer1.0...``, ``fc.*``;
  possibly under ``state_dict`` and/or under one key prefix such as ``module.``,
  ``backbone.`` or ``encoder_q.``, e.g. a ``main_lincls.py``, solo-learn or MoCo
  checkpoint). Only the backbone is loaded; the heads keep their random init.

The architecture is read off the weights: ResNet-18/34/50 from the block layout, a 3x3
``conv1`` means siamlab's CIFAR stem (which also drops the max-pool), the head widths from
the Linear shapes.

Checkpoints are unpickled with ``weights_only=True`` first and fully only when that fails
(siamlab's own checkpoints hold numpy arrays): load only files you trust.
"""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from siamlab.config.schema import RunConfig
from siamlab.config.validation import validate_config
from siamlab.errors import ResultsError
from siamlab.evaluation.file_kind import describe_file
from siamlab.models.config import ModelConfig
from siamlab.models.siamese import SiameseNet, create_model
from siamlab.train.checkpoint import CHECKPOINT_FILE

FORMATS = {
    "siamlab": "a siamlab run's checkpoints/last.pt (a dict with 'model' and 'config')",
    "reference": "facebookresearch/simsiam main_simsiam.py (a dict with 'state_dict' whose "
    "keys start with 'module.encoder.' and 'module.predictor.')",
    "torchvision": "a torchvision ResNet state dict (conv1.weight, layer1.0.*, fc.*), "
    "optionally under 'state_dict' and/or under one key prefix ('module.', 'backbone.', ...)",
}
_LAYOUT = (
    "A backbone is read as a ResNet-18/34/50 with torchvision's key names (conv1.weight, "
    "bn1.*, layer1.0.conv1.weight, ...); rename the keys of another layout to these."
)
_RESNETS = {  # (bottleneck?, blocks in layer3) -> torchvision arch
    (False, 2): "resnet18",
    (False, 6): "resnet34",
    (True, 6): "resnet50",
}


@dataclass
class LoadedCheckpoint:
    """A checkpoint put into siamlab's model.

    Attributes:
        model: the network on CPU.
        format: one of :data:`FORMATS`.
        path: the file read.
        parts: which of backbone / projector / predictor came from the file.
        config: the run's config (siamlab format only).
        run_dir: the run folder holding the file (siamlab format inside a run), else None.
        epoch: the pre-training epoch stored in the file, if any.
        step: the pre-training SGD step stored in the file, if any.
    """

    model: SiameseNet
    format: str
    path: Path
    parts: tuple[str, ...]
    config: RunConfig | None = None
    run_dir: Path | None = None
    epoch: int | None = None
    step: int | None = None


def resolve_path(path: str | Path) -> Path:
    """A checkpoint file, or ``<run folder>/checkpoints/last.pt`` when given a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / CHECKPOINT_FILE
    if not path.is_file():
        raise ResultsError(f"no checkpoint at {path}: give a checkpoint file or a run folder")
    return path


def read(path: Path) -> Any:
    """Unpickle a checkpoint on CPU (weights-only first; see the module docstring)."""
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol: noise before the error
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise _unreadable(path, exc) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from exc


def _supported() -> str:
    return "Supported formats (files written by torch.save):\n  " + "\n  ".join(
        f"{k}: {v}" for k, v in FORMATS.items()
    )


def _unreadable(path: Path, exc: Exception) -> ResultsError:
    kind = describe_file(path)
    # torch's reason only where the file is torch's own archive; else it names internals
    reason = next(iter(str(exc).splitlines()), "")[:200]
    why = f" ({type(exc).__name__}: {reason})" if kind.torch_archive else ""
    return ResultsError(f"{path} is not a torch checkpoint: {kind}{why}.\n{_supported()}")


def _tensors(obj: Any) -> dict[str, Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    return None


def _strip(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in sd.items()}


def _unknown(path: Path, obj: Any) -> ResultsError:
    if isinstance(obj, Mapping):
        found = f"top-level keys {sorted(map(str, obj))[:12]}"
        where = next((k for k in ("state_dict", "model") if _tensors(obj.get(k))), None)
        where = where or next((str(k) for k, v in obj.items() if _tensors(v)), None)
        sd = _tensors(obj[where]) if where else _tensors(obj)
        if sd:
            prefixes = Counter(".".join(k.split(".")[:2]) for k in sd)
            found += f"; {f'{where!r}: ' if where else ''}state-dict key prefixes (count) "
            found += str(dict(prefixes.most_common(12)))
    else:
        found = f"an object of type {type(obj).__name__}"
    return ResultsError(
        f"{path}: unrecognised checkpoint format. Found {found}.\n{_supported()}\n{_LAYOUT}"
    )


def infer_resnet(sd: Mapping[str, Tensor]) -> str:
    """The torchvision ResNet whose state dict ``sd`` is (keys without prefix)."""
    bottleneck = "layer1.0.conv3.weight" in sd
    blocks = len({k.split(".")[1] for k in sd if k.startswith("layer3.")})
    arch = _RESNETS.get((bottleneck, blocks))
    if arch is None:
        raise ResultsError(
            f"unsupported ResNet depth ({blocks} blocks in layer3, bottleneck={bottleneck}); "
            f"siamlab builds {', '.join(_RESNETS.values())}"
        )
    return arch


def _load_strict(module: nn.Module, sd: Mapping[str, Tensor], path: Path, what: str) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ResultsError(f"{path}: the {what} weights do not fit siamlab's model: {exc}") from exc


def _load_siamlab(path: Path, obj: Mapping[str, Any]) -> LoadedCheckpoint:
    config = validate_config(obj["config"], where=f"config stored in {path}")
    model = create_model(config.model)
    _load_strict(model, obj["model"], path, "siamlab")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    if run_dir is not None and not (run_dir / "config.yaml").is_file():
        run_dir = None
    parts = ("backbone", "projector", "predictor")
    epoch, step = obj.get("epoch", _recorded_epoch(obj.get("recorder"))), obj.get("step")
    return LoadedCheckpoint(model, "siamlab", path, parts, config, run_dir, epoch, step)


def _recorded_epoch(recorder: Any) -> int | None:
    """The last epoch a siamlab checkpoint's recorder state holds values of (None: none)."""
    from siamlab.results.schema import variables  # the hooks' schema (imports torch)

    known = variables()
    epochs = [
        max(series)
        for name, series in (recorder or {}).items()
        if name in known and known[name].dims[:1] == ("epoch",) and series
    ]
    return int(max(epochs)) if epochs else None


def reference_to_siamlab(sd: Mapping[str, Tensor]) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Map a reference ``state_dict`` (``module.`` prefix removed) onto siamlab's names.

    Returns:
        The inferred model config and the renamed state dict, with the projector's output
        bias folded into the following BN's running mean (see the module docstring).
    """
    enc = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    linears = sorted(
        int(k.split(".")[1]) for k, v in enc.items() if k.startswith("fc.") and v.ndim == 2
    )
    if len(linears) not in (2, 3):
        raise ResultsError(f"expected a 2- or 3-layer projector in encoder.fc, got {linears}")
    last = linears[-1]
    out: dict[str, Tensor] = {}
    for k, v in enc.items():
        if k.startswith("fc."):
            out["projector." + k.removeprefix("fc.")] = v.clone()
        else:
            out["backbone.body." + k] = v.clone()
    bias = out.pop(f"projector.{last}.bias", None)
    if bias is not None:  # eval-mode BN(Wx + b) = BN'(Wx) with running_mean' = running_mean - b
        out[f"projector.{last + 1}.running_mean"] -= bias
    pred = {k: v.clone() for k, v in sd.items() if k.startswith("predictor.")}
    out.update(pred)  # same Sequential indices as siamlab's predictor
    hidden = sd["predictor.0.weight"].shape[0] if "predictor.0.weight" in sd else None
    cfg = ModelConfig.model_validate(
        {
            **_resnet_keys(enc),
            "dim": enc[f"fc.{last}.weight"].shape[0],
            "projector": {
                "layers": len(linears),
                "hidden_dim": enc[f"fc.{linears[0]}.weight"].shape[0],
            },
            "predictor": {"kind": "mlp", "hidden_dim": hidden},
        }
    )
    return cfg, out


def _resnet_keys(body: Mapping[str, Tensor]) -> dict[str, str | bool]:
    """The ``model.backbone`` keys of a ResNet state dict (its depth, a CIFAR stem if 3x3)."""
    return {"backbone": infer_resnet(body), "cifar_stem": body["conv1.weight"].shape[-1] == 3}


def _load_reference(path: Path, obj: Mapping[str, Any], sd: dict[str, Tensor]) -> LoadedCheckpoint:
    cfg, mapped = reference_to_siamlab(sd)
    model = create_model(cfg)
    has_pred = any(k.startswith("predictor.") for k in mapped)
    if not has_pred:
        mapped.update({f"predictor.{k}": v for k, v in model.predictor.state_dict().items()})
    _load_strict(model, mapped, path, "reference")
    parts = ("backbone", "projector", "predictor") if has_pred else ("backbone", "projector")
    epoch = obj.get("epoch")
    return LoadedCheckpoint(model, "reference", path, parts, epoch=epoch)


def _load_torchvision(path: Path, obj: Any, sd: dict[str, Tensor]) -> LoadedCheckpoint:
    body = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    model = create_model(ModelConfig.model_validate(_resnet_keys(body)))
    _load_strict(model.backbone.body, body, path, "torchvision ResNet")
    epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
    return LoadedCheckpoint(model, "torchvision", path, ("backbone",), epoch=epoch)


def load_checkpoint_any(path: str | Path) -> LoadedCheckpoint:
    """Read a checkpoint of any supported format (see :data:`FORMATS`) into siamlab's model.

    Args:
        path: a checkpoint file or a siamlab run folder.

    Raises:
        ResultsError: a missing or unreadable file, or an unknown format (the message lists
            the keys found and the supported formats).
    """
    path = resolve_path(path)
    obj = read(path)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "config" in obj and _tensors(obj.get("model")):
        return _load_siamlab(path, obj)
    sd = _tensors(obj.get("state_dict", obj)) if isinstance(obj, Mapping) else None
    if sd is not None:
        sd = _strip(sd, "module.")
        if any(k.startswith("encoder.conv1.") for k in sd):
            return _load_reference(path, obj, sd)
        prefix = _resnet_prefix(sd)
        if prefix is not None:
            body = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
            return _load_torchvision(path, obj, body)
    raise _unknown(path, obj)


def _resnet_prefix(sd: Mapping[str, Tensor]) -> str | None:
    """The one key prefix under which ``sd`` holds a ResNet ("" for none), else None."""
    stems = {k.removesuffix("conv1.weight") for k in sd if k.endswith("conv1.weight")}
    found = [p for p in stems if "layer" not in p and f"{p}layer1.0.conv1.weight" in sd]
    return found[0] if len(found) == 1 else None
