"""The written schema of a run's ``metrics.nc`` (an xarray Dataset, netCDF4 file).

Dims: ``step`` (global SGD step, 1-based), ``epoch`` (1-based, value recorded after
that epoch), ``channel`` (index into z's d channels), ``component`` (index of an
eigenvalue or eigenvector, sorted descending: 0 = largest), ``module`` (backbone,
projector, predictor), ``stage`` (``stage1``, ``stage2``, ...: the backbone's stages,
input to output; :meth:`~siamlab.models.backbones.Backbone.stages`). Every dim is a
coordinate (see ``DIMS``). A variable over
``epoch`` alone may hold strings (``verdict``); missing epochs are then ``""``.
Every variable has ``long_name`` and ``units``; those measured on a probe say how
(``bn_mode``: the BatchNorm mode the model was in, ``data``: which samples).

Dataset attrs (provenance): ``study``, ``variant``, ``seed``, ``profile``,
``status`` (running | finished | failed | diverged), ``config`` (the resolved
config as YAML), ``siamlab_version``, ``torch_version``, ``python_version``,
``created``, ``updated``, ``dim`` (d), ``std_reference`` (1/sqrt(d)), ``world_size``,
``precision`` (``fp32`` | ``bf16``: what the training forward ran, where ``config``
may say ``auto``) and ``channels_last`` (0 | 1, likewise resolved; both absent from
files of siamlab before 2026-12-03, which ran what their config says), ``device``
(``cpu`` | ``cuda``) and ``threads`` (torch's CPU threads in the training process: on a
CPU a run's float rounding depends on them; both absent from files before 2026-12-04),
``threads_history`` only for a CPU run resumed on another count (``"2 from step 1, 1
from step 121"``: the count each part of the run trained on; from 2026-12-07),
``data_fingerprint`` (which images the run trained and was evaluated on, after the
limits: ``"blake2b-128:<hex> (<n train> + <n test> images)"`` of in-memory data's
pixels, ``"blake2b-128-files:<hex>-<hex> ..."`` of image folders' file paths under
the root and sampled file sizes (``blake2b-128-names:`` on 2026-12-07: the paths alone);
:mod:`siamlab.data.fingerprint`; from 2026-12-07),
``diverged_step`` when status is diverged.

Variables are declared next to the code that produces them: each diagnostic hook's
``variables`` (gathered through :mod:`siamlab.diagnostics.registry`) and the ``eval_*``
variables of :mod:`siamlab.evaluation.variables` (no dims: one number per run, added to a
finished run's file by ``siamlab eval``). :func:`variables` is their union.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType


@dataclass(frozen=True)
class ResultVar:
    """Schema entry of one result variable, declared by the code that records it.

    Attributes:
        name: the variable's name in ``metrics.nc``.
        dims: its dims, the first one ``step`` or ``epoch`` (none for ``eval_*``).
        long_name: the ``long_name`` attr.
        units: the ``units`` attr.
        extra: further attrs (``bn_mode``, ``data``, ...).
    """

    name: str
    dims: tuple[str, ...]
    long_name: str
    units: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DimSpec:
    """Schema entry of one dim: its coordinate's attrs and, if fixed, its labels.

    ``label_prefix``: string labels ``<prefix>1``, ``<prefix>2``, ... for as many entries
    as the values have (the same labels for every run, so studies over different
    backbones merge on them).
    """

    long_name: str
    units: str = "1"
    labels: tuple[str, ...] = ()
    label_prefix: str = ""


# where a variable is measured: its ``bn_mode`` and ``data`` attrs, shared by many hooks
PROBE_SET = {"bn_mode": "eval", "data": "probe set"}
TRAIN_VIEW1 = {"bn_mode": "train", "data": "training batch (view 1)"}
TRAIN_BOTH_VIEWS = {"bn_mode": "train", "data": "training batch (both views)"}

DIMS: dict[str, DimSpec] = {
    "step": DimSpec("SGD step"),
    "epoch": DimSpec("epoch"),
    "channel": DimSpec("channel"),
    "component": DimSpec("index of the eigenvalue/eigenvector, sorted descending (0 = largest)"),
    "module": DimSpec("part of the network", labels=("backbone", "projector", "predictor")),
    "stage": DimSpec(
        "backbone stage, input to output (ResNet: layer1..layer4; convnet_small: its "
        "conv-BN-ReLU blocks); its output is global-average-pooled",
        label_prefix="stage",
    ),
}


def dim_coordinate(dim: str, size: int) -> list[str] | list[int]:
    """Coordinate values of ``dim`` for an axis of ``size`` entries (labels or 0..size-1)."""
    labels, prefix = DIMS[dim].labels, DIMS[dim].label_prefix
    if prefix:
        return [f"{prefix}{i}" for i in range(1, size + 1)]
    if labels:
        if len(labels) != size:
            raise ValueError(f"dim {dim!r} has {len(labels)} labels, got {size} values")
        return list(labels)
    return list(range(size))


def index_variables(declared: tuple[ResultVar, ...]) -> dict[str, ResultVar]:
    """``declared`` by name.

    Raises:
        ValueError: a name declared twice (two producers of one variable).
    """
    out: dict[str, ResultVar] = {}
    for var in declared:
        if var.name in out:
            raise ValueError(f"result variable {var.name!r} is declared twice")
        out[var.name] = var
    return out


@cache
def variables() -> Mapping[str, ResultVar]:
    """Every result variable: those of all registered hooks, then the ``eval_*`` ones.

    Gathered once per process; importing the hooks imports torch, so this is only called
    where values are recorded or read back with their schema.
    """
    from siamlab.diagnostics.registry import registered_variables
    from siamlab.evaluation.variables import EVAL_VARIABLES

    return MappingProxyType(index_variables((*registered_variables(), *EVAL_VARIABLES)))


def spec(name: str) -> ResultVar:
    """Look up a variable's schema entry.

    Raises:
        KeyError: for a variable no hook or evaluation declares (every recorded value must be).
    """
    known = variables()
    if name not in known:
        raise KeyError(
            f"result variable {name!r} is not declared by any registered hook "
            "(siamlab.diagnostics.registry) or evaluation (siamlab.evaluation.variables)"
        )
    return known[name]
