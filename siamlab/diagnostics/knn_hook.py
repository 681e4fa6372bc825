"""The kNN monitor: weighted kNN top-1 on backbone features (paper Fig. 2 right)."""

from dataclasses import dataclass
from typing import ClassVar

from siamlab.diagnostics.hooks import HookContext, Values
from siamlab.diagnostics.knn import knn_accuracy
from siamlab.diagnostics.probe import ProbeCache
from siamlab.results.schema import ResultVar
from siamlab.train.views import EpochView


@dataclass
class KnnHook:
    """Weighted kNN top-1 of InstDisc: bank = train split, queries = test split, eval mode."""

    variables: ClassVar[tuple[ResultVar, ...]] = (
        ResultVar(
            "knn_top1",
            ("epoch",),
            "weighted kNN top-1 accuracy on the test split (paper Fig. 2 right)",
            "1",
            {"bn_mode": "eval", "data": "bank: train split, test transform; queries: test split"},
        ),
    )
    num_classes: int
    k: int = 200
    temperature: float = 0.1
    epoch_every: int = 1

    @classmethod
    def build(cls, ctx: HookContext) -> "KnnHook":
        """``diagnostics.knn_k`` / ``knn_temperature`` on ``eval_every_epochs``."""
        cfg = ctx.cfg
        every = ctx.every(cfg.eval_every_epochs)
        return cls(ctx.num_classes, cfg.knn_k, cfg.knn_temperature, every)

    def on_epoch(self, view: EpochView, probes: ProbeCache) -> Values:
        bank, test = probes.get("bank"), probes.get("test")
        acc = knn_accuracy(
            bank.h, bank.labels, test.h, test.labels, self.num_classes, self.k, self.temperature
        )
        return {"knn_top1": acc["top1"]}
