"""Evaluation of pre-trained backbones: the paper's linear probe and the weighted kNN.

- :mod:`~siamlab.evaluation.checkpoints`: siamlab, reference-implementation and torchvision
  checkpoints into a :class:`~siamlab.models.siamese.SiameseNet`.
- :mod:`~siamlab.evaluation.features`: frozen feature extraction, the backbone-unchanged check.
- :mod:`~siamlab.evaluation.linear_probe` (fast path) and
  :mod:`~siamlab.evaluation.augmented_probe` (paper path, resumable); LARS in
  :mod:`~siamlab.evaluation.lars`.
- :mod:`~siamlab.evaluation.knn_eval`: the training monitor's kNN on any split.
- :mod:`~siamlab.evaluation.writeback`: ``eval_*`` variables into a run's ``metrics.nc``.
- :mod:`~siamlab.evaluation.runner`: all of it for one checkpoint (``siamlab eval``).
"""
