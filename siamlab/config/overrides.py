"""Merging partial configs (one layer over another) and parsing ``--set a.b.c=value``.

A layer that changes a component's kind (``model.backbone``, ``model.predictor.kind``,
``objective.eta.mode``, ``data.dataset``) drops the options the lower layers set for the
old kind that the new kind does not have; likewise ``model.bn_preset`` drops the lower
layers' BN flags and ``model.target.momentum: 0`` their ``model.target.schedule``. So a
profile's ``cifar_stem: true`` does not turn into an error when a variant picks
``convnet_small``; within one layer a key of another kind stays an error.
"""

import copy
from typing import Any

import yaml

from siamlab.config.unions import UNIONS
from siamlab.errors import ConfigError

BN_FLAGS = [
    (part, flag) for part in ("projector", "predictor") for flag in ("bn_hidden", "bn_output")
]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively by ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _at(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None  # type: ignore[assignment]
    return tree


def _drop(tree: dict[str, Any], path: tuple[str, ...], keys: set[str]) -> None:
    mapping = _at(tree, path)
    if isinstance(mapping, dict):
        for key in keys & set(mapping):
            del mapping[key]


def merge_layer(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """``upper`` over ``lower``, after dropping lower options that the upper layer voids.

    Neither argument is modified.
    """
    lower = copy.deepcopy(lower)
    for union in UNIONS:
        new, old = _at(upper, union.tag_path()), _at(lower, union.tag_path())
        if isinstance(new, str) and new in union.registry and new != (old or union.default):
            keep = set(union.registry.get(new).model_fields)
            others = {k for _, cls in union.registry.items() for k in cls.model_fields}
            _drop(lower, union.options_path(), others - keep)
    if _at(upper, ("model", "bn_preset")) is not None:
        for part, flag in BN_FLAGS:
            _drop(lower, ("model", part), {flag})
    if _at(upper, ("model", "target", "momentum")) == 0:
        _drop(lower, ("model", "target"), {"schedule"})
    return deep_merge(lower, upper)


def parse_set(expr: str) -> dict[str, Any]:
    """Turn ``"a.b.c=value"`` into ``{"a": {"b": {"c": value}}}``.

    The value is read as YAML, so ``true``, ``0.1``, ``[0.2, 1.0]`` and ``null`` get
    their natural types.

    Raises:
        ConfigError: when the expression has no ``=`` or an empty key.
    """
    key, sep, raw = expr.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set expects KEY.PATH=VALUE (e.g. optim.base_lr=0.1), got {expr!r}")
    try:
        value: Any = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    for part in reversed(parts):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def apply_sets(config: dict[str, Any], exprs: list[str]) -> dict[str, Any]:
    """Apply several ``--set`` expressions, in order, as one layer over ``config``."""
    layer: dict[str, Any] = {}
    for expr in exprs:
        layer = deep_merge(layer, parse_set(expr))
    return merge_layer(config, layer)
