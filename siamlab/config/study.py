"""Study files: a question asked as ``base`` + named ``variants`` x ``seeds`` at a profile.

Layering, lowest first: config defaults (the paper's ImageNet recipe) -> profile ->
study ``base`` -> the study's ``per_profile`` entry for that profile -> the variant's
override -> the variant's own ``per_profile`` entry for that profile -> ``--set``
overrides from the CLI (all of them one layer). Layers merge with
:func:`~siamlab.config.overrides.merge_layer`: a layer that changes a component's kind
drops the lower layers' options of the old kind.
"""

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from siamlab.config.overrides import apply_sets, merge_layer
from siamlab.config.profiles import DEFAULT_PROFILE, get_profile
from siamlab.config.schema import RunConfig
from siamlab.config.seeds import MAX_SEED
from siamlab.config.validation import validate_config
from siamlab.errors import ConfigError


def _one_default_variant() -> dict[str, dict[str, Any] | None]:
    return {"default": {}}


class PaperRef(BaseModel):
    """What the paper reports for a variant's row, printed beside siamlab's numbers.

    Attributes:
        ref: where in the paper (e.g. "Table 1 (a)").
        top1: the paper's ImageNet linear top-1 (%), if it gives one.
        outcome: what happened there (``collapse`` = complete collapse, as the paper's
            0.1% rows; ``dimensional_collapse`` = a few directions left, for labelled
            runs outside the paper).
        note: anything else.
    """

    model_config = ConfigDict(extra="forbid")

    ref: str = ""
    top1: float | None = None
    outcome: (
        Literal[
            "no_collapse",
            "collapse",
            "dimensional_collapse",
            "unstable",
            "not_converging",
            "diverges",
        ]
        | None
    ) = None
    note: str = ""


class StudyFile(BaseModel):
    """The YAML layout of a study.

    Attributes:
        name: the study's name; results go to ``<output.root>/<name>/``.
        description: what question the study asks.
        profile: the scale it runs at unless ``--profile`` says otherwise.
        base: partial config shared by all variants.
        per_profile: profile name -> partial config shared by all variants at that
            profile only (e.g. a stronger crop for the quick profile's tiny digits).
        variants: variant name -> partial config override; it may hold a
            ``per_profile`` mapping (profile name -> partial config) applied after the
            variant's own override at that profile only (e.g. the k of a k-step
            variant chosen to stay below one epoch at each scale, Sec. 5.2), and a
            ``profiles`` list: the profiles it runs at (absent: all), for rows a scale
            cannot hold (Table 2's batch of 4096 on the quick profile's 1,437 digits).
        seeds: one run per variant and seed (integers >= 0).
        paper: optional annotations, variant -> the paper's outcome for that row.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    profile: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    per_profile: dict[str, dict[str, Any]] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any] | None] = Field(
        default_factory=_one_default_variant, min_length=1
    )
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(
        default_factory=lambda: [0], min_length=1
    )
    paper: dict[str, PaperRef | str] = Field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: a variant at a seed, with its resolved config."""

    study: str
    variant: str
    seed: int
    profile: str
    config: RunConfig
    paper: str = ""  # the study's annotation of this variant, as YAML text

    def directory(self) -> Path:
        """``<output.root>/<study>/<variant>/seed<k>``."""
        return (
            Path(self.config.output.root).expanduser()
            / self.study
            / self.variant
            / f"seed{self.seed}"
        )


def read_study(path: str | Path) -> StudyFile:
    """Read and check a study file.

    Raises:
        ConfigError: the file is missing, not YAML, or not a valid study.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file not found: {path} (studies live in studies/*.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file: a study is a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a YAML mapping with name, base, variants, seeds")
    try:
        return StudyFile.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"invalid study file {path}:\n  " + "\n  ".join(lines)) from None


def _describe(error: Any) -> str:
    """One line of a study file's error; a wrong top-level key gets the nearest valid one."""
    where = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        keys = list(StudyFile.model_fields)
        close = difflib.get_close_matches(str(error["loc"][0]), keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{where}: not a study key; {hint}a study has: {', '.join(keys)}"
    return f"{where}: {error['msg']}"


def expand_study(
    study: StudyFile,
    profile: str | None = None,
    sets: list[str] | None = None,
    only: list[str] | None = None,
    seeds: list[int] | None = None,
) -> list[RunSpec]:
    """Resolve every variant x seed into a validated RunSpec.

    Every run is validated before any is returned, so a bad variant fails the
    whole study before work starts.

    Args:
        study: the parsed study file.
        profile: overrides the study's profile.
        sets: ``--set`` expressions, applied last.
        only: restrict to these variants.
        seeds: replace the study's seeds (``--seeds``).

    Raises:
        ConfigError: an unknown variant in ``only`` or an invalid resolved config.
    """
    profile_name = profile or study.profile or DEFAULT_PROFILE
    for name in study.per_profile:
        get_profile(name)  # an unknown profile name is an error, not a silent no-op
    layers = {name: _variant_layers(name, raw) for name, raw in study.variants.items()}
    base = merge_layer(get_profile(profile_name), study.base)
    base = merge_layer(base, study.per_profile.get(profile_name, {}))
    names = list(study.variants)
    for name in only or []:
        if name not in study.variants:
            raise ConfigError(f"unknown variant {name!r}; this study has: {', '.join(names)}")
        if not layers[name].runs_at(profile_name):
            raise ConfigError(
                f"variant {name!r} runs only at profile(s) {', '.join(layers[name].profiles)}, "
                f"not at {profile_name!r}: pass --profile {layers[name].profiles[0]}"
            )
    runs = []
    for name in only or [n for n in names if layers[n].runs_at(profile_name)]:
        own, per_profile = layers[name].own, layers[name].per_profile
        raw = merge_layer(merge_layer(base, own), per_profile.get(profile_name, {}))
        raw = apply_sets(raw, sets or [])
        config = validate_config(raw, where=f"config of variant {name!r}")
        paper = _paper_yaml(study.paper.get(name))
        runs += [
            RunSpec(study.name, name, seed, profile_name, config, paper)
            for seed in seeds or study.seeds
        ]
    if not runs:
        at = sorted({p for layer in layers.values() for p in layer.profiles})
        raise ConfigError(
            f"no variant of study {study.name!r} runs at profile {profile_name!r} (its "
            f"variants list profiles: {', '.join(at)}); pass --profile {at[0]}"
        )
    return runs


@dataclass(frozen=True)
class VariantLayers:
    """A variant's override, its ``per_profile`` entries and the profiles it runs at."""

    own: dict[str, Any]
    per_profile: dict[str, dict[str, Any]]
    profiles: tuple[str, ...]  # () = every profile

    def runs_at(self, profile: str) -> bool:
        """Whether the variant is a run of the study at ``profile``."""
        return not self.profiles or profile in self.profiles


def _variant_layers(name: str, raw: dict[str, Any] | None) -> VariantLayers:
    """A variant's override without its ``per_profile`` and ``profiles`` entries, and those.

    Raises:
        ConfigError: ``per_profile`` is not a mapping of known profiles to mappings, or
            ``profiles`` not a non-empty list of known profiles.
    """
    own = dict(raw or {})
    per_profile = own.pop("per_profile", None) or {}
    profiles = own.pop("profiles", None)
    where = f"variant {name!r}: per_profile"
    if not isinstance(per_profile, dict) or not all(
        isinstance(v, dict) for v in per_profile.values()
    ):
        raise ConfigError(
            f"{where} must map profile names to partial configs, "
            "e.g. per_profile: {quick: {train: {epochs: 10}}}"
        )
    if profiles is not None and (
        not isinstance(profiles, list)
        or not profiles
        or not all(isinstance(p, str) for p in profiles)
    ):
        raise ConfigError(
            f"variant {name!r}: profiles must be a list of profile names, e.g. "
            "profiles: [cifar10, imagenet]"
        )
    for key, named in (("per_profile", per_profile), ("profiles", profiles or [])):
        for profile in named:
            try:
                get_profile(str(profile))
            except ConfigError as exc:
                raise ConfigError(f"variant {name!r}: {key}: {exc}") from None
    return VariantLayers(own, per_profile, tuple(profiles or ()))


def _paper_yaml(ref: PaperRef | str | None) -> str:
    if ref is None:
        return ""
    if isinstance(ref, str):
        ref = PaperRef(note=ref)
    return yaml.safe_dump(ref.model_dump(exclude_defaults=True), sort_keys=False)
