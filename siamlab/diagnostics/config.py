"""Which collapse diagnostics run, and how often."""

from pydantic import BaseModel, ConfigDict, Field


class DiagnosticsConfig(BaseModel):
    """Schedules and parameters of the diagnostics (see ../shared/paper/DIAGNOSTICS.md).

    Attributes:
        std_every_steps: per-step loss is always logged; the train-mode std of the
            batch's z/||z|| every N steps.
        eval_every_epochs: run the eval-mode probe (held-out z std) and the kNN
            monitor every N epochs (and always after the last one).
        knn_k: neighbours of the weighted kNN monitor (InstDisc: 200).
        knn_temperature: its temperature T (0.1 in CIFAR demos).
        probe_size: size of the fixed probe set (a seeded subset of the train split under
            the test transform) for spectra and ranks; None = the whole train split.
        bank_size: training images in the kNN bank (None = all).
    """

    model_config = ConfigDict(extra="forbid")

    std_every_steps: int = Field(default=1, ge=1)
    eval_every_epochs: int = Field(default=1, ge=1)
    knn_k: int = Field(default=200, ge=1)
    knn_temperature: float = Field(default=0.1, gt=0)
    probe_size: int | None = Field(default=8192, ge=2)
    bank_size: int | None = Field(default=None, ge=1)
