"""The registered diagnostic hooks, by name: one line per hook. Torch-free.

``diagnostics.hooks`` in a config names the hooks a run uses; validation checks the names
against :data:`HOOKS` without importing any hook. A run resolves them with
:func:`resolve_hook` (importlib) when it builds its monitor. Adding a diagnostic = one file
with a hook class (see :mod:`siamlab.diagnostics.hooks`) + one line here.

Conditional hooks (:data:`CONDITIONAL`) are listed by default but only run where their
condition holds; each one's ``build`` returns None otherwise.
"""

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siamlab.diagnostics.hooks import HookClass
    from siamlab.results.schema import ResultVar

# name -> "module:Class", in the order the hooks run (the kNN hook before the probe-set
# hooks, so the probe set reuses the bank's embeddings; summaries run after all hooks)
HOOKS = MappingProxyType(
    {
        "loss": "siamlab.diagnostics.loss_hook:LossHook",
        "train_std": "siamlab.diagnostics.std_hooks:TrainStdHook",
        "grad_norm": "siamlab.diagnostics.step_hooks:GradNormHook",
        "batch_geometry": "siamlab.diagnostics.step_hooks:BatchGeometryHook",
        "knn": "siamlab.diagnostics.knn_hook:KnnHook",
        "eval_std": "siamlab.diagnostics.std_hooks:EvalStdHook",
        "centred": "siamlab.diagnostics.centred_hook:CentredGeometryHook",
        "spectrum": "siamlab.diagnostics.spectrum_hook:SpectrumHook",
        "stages": "siamlab.diagnostics.stage_hook:StageSpectrumHook",
        "predictor_alignment": "siamlab.diagnostics.predictor_hook:PredictorAlignmentHook",
        "verdict": "siamlab.diagnostics.verdict:VerdictJudge",
        "eta_stats": "siamlab.diagnostics.eta_stats:EtaStatsHook",
    }
)

DEFAULT_HOOKS: tuple[str, ...] = tuple(HOOKS)

CONDITIONAL = MappingProxyType(
    {
        "eta_stats": "runs only when objective.eta.mode is not off (paper Sec. 5 targets)",
        "predictor_alignment": "records nothing for a predictor without parameters",
        "verdict": "judges epochs that have z_std_eval and epoch_loss (eval_std, loss)",
    }
)


def unknown_hooks(names: list[str]) -> list[str]:
    """The names in ``names`` that are not registered."""
    return [n for n in names if n not in HOOKS]


def resolve_hook(name: str) -> "HookClass":
    """Import the hook class registered as ``name``.

    Raises:
        KeyError: ``name`` is not registered.
    """
    module, _, attr = HOOKS[name].partition(":")
    hook: HookClass = getattr(importlib.import_module(module), attr)
    return hook


def registered_variables() -> tuple["ResultVar", ...]:
    """The result variables of every registered hook, in registry order (imports torch)."""
    return tuple(var for name in HOOKS for var in resolve_hook(name).variables)
