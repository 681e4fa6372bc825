"""Merging partial configs and parsing ``--set a.b.c=value`` overrides."""

import copy
from typing import Any

import yaml

from siamlab.errors import ConfigError


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively by ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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
    """Apply several ``--set`` expressions in order."""
    for expr in exprs:
        config = deep_merge(config, parse_set(expr))
    return config
