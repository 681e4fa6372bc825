"""Optimiser, schedule and training-loop configuration (paper Sec. 3; docs/paper-recipes.md)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OptimConfig(BaseModel):
    """SGD (or LARS) with the paper's linear lr scaling: lr = base_lr x batch / 256.

    Attributes:
        name: ``sgd`` (the paper's pre-training optimiser) or ``lars`` (large batches).
        base_lr: 0.05 on ImageNet, 0.03 in the CIFAR recipe.
        momentum: SGD momentum (0.9).
        weight_decay: 1e-4 (ImageNet) / 5e-4 (CIFAR), on all parameters as the paper
            (SGD; LARS gives 1-D parameters no trust ratio and no weight decay, as MoCo
            v3's LARS, where apex's LARC of the reference linear probe adapts them too:
            :mod:`siamlab.train.lars`).
        schedule: ``cosine`` decay to 0 or ``constant``.
        update: ``step`` (lr per SGD step) or ``epoch`` (once per epoch, as the
            reference code).
        warmup_epochs: linear warm-up of the encoder's lr before the cosine decay
            (Table 2 uses 10 for batch >= 1024). A ``constant`` predictor lr is not
            warmed up: it holds base_lr x batch / 256 from the first step, as the
            reference code's fix_lr group is always set to the initial lr.
        predictor_lr: ``constant`` (kept at its initial value: the paper's
            "fix-pred-lr" of Table 1c, which Sec. 4.2 uses "in the following
            subsections", and the reference code's 68.1 recipe; the default) or
            ``cosine`` (decays, and warms up, with the encoder: Table 1c's baseline).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Literal["sgd", "lars"] = "sgd"
    base_lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    update: Literal["step", "epoch"] = "step"
    warmup_epochs: float = Field(default=0, ge=0)
    predictor_lr: Literal["cosine", "constant"] = "constant"


class TrainConfig(BaseModel):
    """The training loop.

    Attributes:
        epochs: number of passes over the training set.
        batch_size: global batch in images (the paper's "batch size"; each image
            gives two views, or two pairs for ``objective.symmetry=asymmetric_2x``).
        max_steps: stop after this many steps in all (smoke tests); None = no cap.
        device: ``auto`` picks CUDA when present.
        deterministic: seeded, deterministic kernels (bit-identical resume on CPU).
        threads: torch CPU threads; None leaves torch's default.
        checkpoint_every_epochs: write a checkpoint (and the results) every N epochs
            and always at the end.
        checkpoint_every_steps: also every N steps inside an epoch (long ImageNet
            epochs); None = only at epoch ends.
        precision: ``fp32``, or ``bf16`` autocast of the training forward (matmuls and
            convolutions in bf16; weights, loss, optimiser, evaluation and diagnostics
            in fp32), or ``auto``: bf16 where the device runs it natively (CUDA with
            bf16, CPUs with AVX512-BF16/AMX), else fp32. Changes the numbers, so fp32
            by default; the quick profile uses ``auto`` (README, Speed: on the main
            study its verdicts and diagnostics stay within the seed spread of fp32).
        channels_last: NHWC layout of conv weights and input batches (faster oneDNN /
            cuDNN kernels; the same results up to float rounding); ``auto``: on when
            the precision resolves to bf16, and on a CPU with ``precision=auto`` (fp32
            there without native bf16); off with an explicit ``precision=fp32``.
        compile: run the training forward through ``torch.compile`` (needs a C++
            compiler; the first steps compile).
        stop_on_collapse: end the run at the end of the epoch whose evaluation makes its
            verdict ``collapsed`` (entered after ``diagnostics.verdict.hold_evaluations``
            evaluations, not provisional): checkpoint and results are written with status
            ``stopped_collapsed`` and the study goes on. Re-running skips such a run;
            ``siamlab run --resume-stopped`` trains it on to ``epochs`` (it is collapsed
            already, so it stops again only if its verdict leaves collapse and enters it
            anew). Needs the ``loss``, ``eval_std``, ``centred`` and ``verdict`` hooks.
            May be changed for a run that has a checkpoint. Off by default.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=512, ge=2)
    max_steps: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    threads: int | None = Field(default=None, ge=1)
    checkpoint_every_epochs: int = Field(default=1, ge=1)
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    channels_last: bool | Literal["auto"] = False
    compile: bool = False
    stop_on_collapse: bool = False
