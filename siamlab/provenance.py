"""Provenance attrs written into every result file."""

import datetime
import platform
from typing import Any

import yaml

from siamlab import __version__
from siamlab.config.schema import RunConfig


def config_yaml(config: RunConfig) -> str:
    """The resolved config as YAML text (what ``config.yaml`` and the attrs hold)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def versions() -> dict[str, Any]:
    """Versions of siamlab, torch and Python."""
    import torch  # here, not at the top: `siamlab validate` dumps configs without torch

    return {
        "siamlab_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
    }


def config_diff(
    old: dict[str, Any], new: dict[str, Any], prefix: str = "", shared_only: bool = False
) -> list[str]:
    """Dotted key paths whose values differ between two nested config dicts.

    ``shared_only``: compare only the keys both dicts have (a key one side lacks, e.g.
    one added to siamlab since ``old`` was written, is no difference).
    """
    keys = sorted(set(old) & set(new) if shared_only else set(old) | set(new))
    diffs: list[str] = []
    for key in keys:
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, f"{path}.", shared_only)
        elif a != b:
            diffs.append(f"{path}: {a!r} -> {b!r}")
    return diffs
