"""Configuration of the EM-hypothesis targets eta (paper Sec. 5)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EtaConfig(BaseModel):
    """Where the targets come from in the EM view (Sec. 5; docs/paper-recipes.md#em-hypothesis).

    Attributes:
        mode: ``off`` — SimSiam (eta_x = F(T'(x)) of the current step, the 1-step case);
            ``cached`` — k-step alternation: eta for the images of the next k steps is
            computed once with the current weights (one augmentation pair each, no
            gradient) and the following k SGD steps train against it;
            ``moving_average`` — one eta_x per image of the data set, updated when x
            is sampled: eta_x <- m eta_x + (1 - m) F(T'(x)).
        k: SGD steps per alternation for ``cached``, or ``epoch``.
        momentum: m of ``moving_average`` (the paper: 0.8, without a predictor).
        storage: ``memory`` (a tensor) or ``memmap`` (a disk-backed array with random
            row access, for ImageNet-size tables).
        dtype: storage precision of the moving-average table.
        path: folder for the memmap files; None = the run's ``eta/`` folder.

    BN mode when computing eta (``cached``): train mode, over exactly the batches the
    SGD steps will see, so that k = 1 reproduces SimSiam bit for bit; the BN running
    statistics are restored afterwards, so the cache pass leaves the model unchanged.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "cached", "moving_average"] = "off"
    k: int | Literal["epoch"] = 1
    momentum: float = Field(default=0.8, ge=0.0, lt=1.0)
    storage: Literal["memory", "memmap"] = "memory"
    dtype: Literal["float16", "float32"] = "float32"
    path: str | None = None

    @model_validator(mode="after")
    def _check_k(self) -> "EtaConfig":
        if isinstance(self.k, int) and self.k < 1:
            raise ValueError(f"k must be >= 1 or 'epoch', got {self.k}")
        return self
