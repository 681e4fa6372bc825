"""siamlab: a research toolkit for studying collapse in Siamese self-supervised learning."""

from typing import Any

__version__ = "0.1.0"

# public names imported on first use, so that `import siamlab` stays light (no torch)
_LAZY = {
    "CollapseMonitor": "siamlab.monitor",
    "training_parts": "siamlab.monitor",
}


def __getattr__(name: str) -> Any:
    """``siamlab.CollapseMonitor`` and ``siamlab.training_parts``, imported when first read."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siamlab' has no attribute {name!r}")
