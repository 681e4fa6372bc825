"""``siamlab diagnose``: the collapse diagnostics and verdict of any checkpoint, on any images.

- :mod:`~siamlab.diagnose.checkpoint_files`: which files, and the epoch of each;
- :mod:`~siamlab.diagnose.data`: what ``--data`` names (built-in, npz, image folders);
- :mod:`~siamlab.diagnose.measure`: the run's embedding-only epoch hooks on one checkpoint;
- :mod:`~siamlab.diagnose.verdict`: the verdict from embeddings alone;
- :mod:`~siamlab.diagnose.results`: ``diagnostics.nc`` in the results schema;
- :mod:`~siamlab.diagnose.figures`, :mod:`~siamlab.diagnose.report`: figures, printed report;
- :mod:`~siamlab.diagnose.runner`: :func:`diagnose`, all of it as one call.

Importing this package does not import torch; :func:`diagnose` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Diagnosis", "diagnose"]


def __getattr__(name: str) -> Any:
    """``diagnose`` and ``Diagnosis`` from :mod:`~siamlab.diagnose.runner`, on first use."""
    if name in __all__:
        from siamlab.diagnose import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
