"""Collapse diagnostics for a training loop of your own.

:class:`CollapseMonitor` runs siamlab's hooks on the steps and epochs a loop hands it;
:func:`training_parts` gives such a loop the model, optimiser, lr schedule and batches of a
siamlab run, so the two can be compared (README, "Collapse checks in your own training loop").
"""

from siamlab.monitor.collapse_monitor import CollapseMonitor
from siamlab.monitor.parts import TrainingParts, parts_of, training_parts

__all__ = ["CollapseMonitor", "TrainingParts", "parts_of", "training_parts"]
