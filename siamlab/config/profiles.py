"""Profiles set the *scale* of a study; the study file says what varies.

Each profile is a partial config applied on top of the defaults and below the
study's ``base``, its variants and ``--set`` overrides.
"""

from typing import Any

from siamlab.errors import ConfigError

PROFILES: dict[str, dict[str, Any]] = {
    # Minutes on a 2-core CPU: sklearn's bundled digits, a small convnet. lr = 0.1 x 128/256
    # = 0.05 keeps stop-grad healthy and lets the no-stop-grad control collapse within
    # 40 epochs (440 steps); one loader worker overlaps augmentation with the SGD step.
    # precision / channels_last "auto": bf16 autocast + NHWC where the CPU has AVX512-BF16 /
    # AMX (or on CUDA), fp32 elsewhere; benchmarks/fast_default.py shows the verdicts and
    # diagnostics of studies/em_hypothesis.yaml within the seed spread of fp32 (README, Speed).
    "quick": {
        "data": {
            "dataset": "digits",
            "image_size": 16,
            "num_workers": 1,
            "device_resident": "auto",  # batched views: in the training process on 2 cores
            "augment": {
                "crop_scale": [0.3, 1.0],
                "blur_p": 0.0,
                "flip_p": 0.0,
            },
        },
        "model": {
            "backbone": "convnet_small",
            "width": 32,
            "dim": 512,
            "projector": {"layers": 2, "hidden_dim": 512},
        },
        "optim": {"base_lr": 0.1, "weight_decay": 5e-4},
        # a checkpoint and metrics.nc every 10th epoch and at the end (writing them every
        # epoch took a fifth of a run; a kill loses at most ~10 s of training here)
        "train": {
            "epochs": 40,
            "batch_size": 128,
            "precision": "auto",
            "channels_last": "auto",
            "checkpoint_every_epochs": 10,
        },
        # the predictor alignment every 4th epoch (and the first and last): its F costs a
        # (2B x d)^T (2B x d) matmul at every step of an epoch it is reported in, 1.2% of a
        # step here; the other epoch diagnostics stay every epoch
        "diagnostics": {"knn_k": 20, "predictor_every_epochs": 4},
    },
    # The paper's CIFAR-10 recipe (supplement D).
    "cifar10": {
        "data": {
            "dataset": "cifar10",
            "root": "data",
            "image_size": 32,
            "augment": {"blur_p": 0.0},
        },
        "model": {
            "backbone": "resnet18",
            "cifar_stem": True,
            "dim": 2048,
            "projector": {"layers": 2, "hidden_dim": 2048},
        },
        "optim": {"base_lr": 0.03, "weight_decay": 5e-4},
        "train": {"epochs": 800, "batch_size": 512},
    },
    # The paper's ImageNet recipe (docs/paper-recipes.md#optimiser-recipe-imagenet): the
    # defaults, with the cosine lr set once per epoch as the reference code sets it.
    "imagenet": {
        "data": {"dataset": "imagefolder", "image_size": 224},
        "model": {"backbone": "resnet50", "dim": 2048, "projector": {"layers": 3}},
        "optim": {"base_lr": 0.05, "weight_decay": 1e-4, "update": "epoch"},
        "train": {"epochs": 100, "batch_size": 512},
        "diagnostics": {"bank_size": 100_000, "probe_size": 10_000},
    },
}

DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> dict[str, Any]:
    """Return the partial config of profile ``name``.

    Raises:
        ConfigError: for an unknown profile, listing the known ones.
    """
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]
