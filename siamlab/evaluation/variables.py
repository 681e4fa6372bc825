"""Result variables of the evaluations of a finished run (``siamlab eval``).

Dimensionless, one number per run, written by :mod:`siamlab.evaluation.writeback` with
attrs ``recipe``, ``data``, ``path``, ``checkpoint`` and ``evaluated``; part of the schema
of :mod:`siamlab.results.schema`. Torch-free.
"""

from siamlab.results.schema import ResultVar

_EVALUATIONS = (
    ("eval_linear_top1", "linear-probe top-1 accuracy, frozen backbone (paper linear evaluation)"),
    ("eval_linear_top5", "linear-probe top-5 accuracy, frozen backbone"),
    ("eval_linear_train_top1", "linear-probe top-1 accuracy on its training data, last epoch"),
    ("eval_knn_top1", "weighted kNN top-1 accuracy on backbone features (InstDisc)"),
    ("eval_knn_top5", "weighted kNN top-5 accuracy on backbone features (InstDisc)"),
)

EVAL_VARIABLES: tuple[ResultVar, ...] = tuple(
    ResultVar(name, (), long_name, "1", {"bn_mode": "eval"}) for name, long_name in _EVALUATIONS
)
