"""Per-mode configs of the EM-hypothesis targets eta (``objective.eta.mode``, paper Sec. 5).

Each class declares its mode once; :data:`ETA_CONFIGS` is the list of allowed modes and
:mod:`siamlab.eta.build` registers a provider builder under each. An option of another
mode is an error naming the mode it belongs to (e.g. ``objective.eta.k applies to
eta.mode cached only``).
"""

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from siamlab.config.kinds import KindConfig, kind_registry, kind_union


class EtaConfig(KindConfig):
    """Common base: where the targets come from in the EM view of SimSiam (paper Sec. 5).

    See docs/paper-recipes.md#em-hypothesis.

    Attributes:
        mode: ``off``: SimSiam (eta_x = F(T'(x)) of the current step, the 1-step case);
            ``cached``: k-step alternation; ``moving_average``: one eta_x per image.
    """

    mode: str


class EtaOffConfig(EtaConfig):
    """SimSiam's own targets: the other view's z of the same step (the 1-step case)."""

    mode: Literal["off"] = "off"


class CachedEtaConfig(EtaConfig):
    """k-step alternation: eta is computed once and trained against for k steps.

    Eta for the images of the next k steps is computed once with the current weights
    (one augmentation pair each, no gradient) and the following k SGD steps train
    against it.

    BN mode when computing eta: train mode, over exactly the batches the SGD steps will
    see, so that k = 1 reproduces SimSiam bit for bit; the BN running statistics are
    restored afterwards, so the cache pass leaves the model unchanged.

    Attributes:
        k: SGD steps per alternation, or ``epoch``.
    """

    mode: Literal["cached"] = "cached"
    k: int | Literal["epoch"] = 1

    @model_validator(mode="after")
    def _check_k(self) -> "CachedEtaConfig":
        if isinstance(self.k, int) and self.k < 1:
            raise ValueError(f"k must be >= 1 or 'epoch', got {self.k}")
        return self


class MovingAverageEtaConfig(EtaConfig):
    """One eta_x per image of the data set, a moving average over its visits.

    Updated when x is sampled: eta_x <- m eta_x + (1 - m) F(T'(x)).

    Attributes:
        momentum: m (the paper: 0.8, without a predictor).
        storage: ``memory`` (a tensor) or ``memmap`` (a disk-backed array with random
            row access, for ImageNet-size tables).
        dtype: storage precision of the table.
        path: folder for the memmap files; None = the run's ``eta/`` folder.
    """

    mode: Literal["moving_average"] = "moving_average"
    momentum: float = Field(default=0.8, ge=0.0, lt=1.0)
    storage: Literal["memory", "memmap"] = "memory"
    dtype: Literal["float16", "float32"] = "float32"
    path: str | None = None


ETA_CONFIGS = kind_registry(
    "eta mode", "mode", [EtaOffConfig, CachedEtaConfig, MovingAverageEtaConfig]
)

if TYPE_CHECKING:
    EtaField = EtaConfig
else:
    EtaField = kind_union(ETA_CONFIGS, "mode", "off")
