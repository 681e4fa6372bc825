"""Per-kind configs: one pydantic class per kind of a component, holding its options only.

Each kind of a component (a backbone, a predictor, an eta mode, a dataset) declares its
name once, in its tag field.

The classes of one component form a :class:`~siamlab.registry.Registry` (the allowed
names come from it) and a pydantic discriminated union (:func:`kind_union`). A key that
belongs to another kind is an error that names the kind it belongs to
(:func:`check_applies`), e.g. ``model.width applies to backbone convnet_small only
(backbone is resnet18)``.

Two layouts are in use, both keeping today's user-facing keys:

- nested: the tag sits inside the component's own mapping (``model.predictor.kind``,
  ``objective.eta.mode``);
- flat: the tag is a string key and the kind's options are its siblings
  (``model.backbone: resnet18`` with ``model.cifar_stem``; ``data.dataset: npz`` with
  ``data.root``). :func:`nest_flat` gathers them into the union before validation and
  :func:`flatten` writes them back out, so saved configs keep the flat form.

Layering (profile -> study base -> per_profile -> variant -> ``--set``, see
:func:`siamlab.config.overrides.merge_layer`): when a higher layer changes a tag, the
options a lower layer set for the old kind that do not apply to the new one are dropped;
within one layer an option of another kind is an error.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag
from pydantic_core import PydanticCustomError

from siamlab.registry import Registry

KindRegistry = Registry[type[BaseModel]]


class KindConfig(BaseModel):
    """Base of every per-kind config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def kind_registry(kind: str, tag: str, classes: list[type[BaseModel]]) -> KindRegistry:
    """A registry of per-kind classes, each under the default of its ``tag`` field."""
    registry: KindRegistry = Registry(kind)
    for cls in classes:
        registry.add(str(cls.model_fields[tag].default), cls)
    return registry


def kind_union(registry: KindRegistry, tag: str, default: str) -> Any:
    """The discriminated union of a registry's classes; a missing tag means ``default``."""

    def pick(value: Any) -> Any:
        if isinstance(value, Mapping):
            return value.get(tag, default)
        return getattr(value, tag, None)

    members = tuple(Annotated[cls, Tag(name)] for name, cls in registry.items())
    return Annotated[Union[members], Discriminator(pick)]  # noqa: UP007 (built at runtime)


def option_keys(registry: KindRegistry, tag: str) -> set[str]:
    """Every option key of any kind (the tag excluded)."""
    return {key for _, cls in registry.items() for key in cls.model_fields} - {tag}


def owners(registry: KindRegistry, key: str) -> list[str]:
    """The kinds that have option ``key``."""
    return [name for name, cls in registry.items() if key in cls.model_fields]


def chosen_kind(kind: object, registry: KindRegistry) -> str | None:
    """``kind`` if it names a registered kind, else None (pydantic reports a bad tag).

    Args:
        kind: the value of a component's tag key (``kind``, ``mode``), its default
            where absent.
        registry: the component's per-kind classes.
    """
    return kind if isinstance(kind, str) and kind in registry else None


def check_applies(
    given: Mapping[str, Any],
    registry: KindRegistry,
    tag: str,
    default: str,
    label: str,
    prefix: str,
) -> None:
    """Refuse options of ``given`` that belong to another kind than the chosen one.

    Args:
        given: the raw mapping of the component (tag and options).
        registry: the component's per-kind classes.
        tag: the tag key (``kind``, ``mode``).
        default: the kind when ``given`` has no tag.
        label: how the tag is named in messages (``backbone``, ``eta.mode``).
        prefix: the dotted path of the options (``model.``, ``objective.eta.``).

    Raises:
        PydanticCustomError: ``kind_key``, whose message is the whole explanation.
    """
    kind = chosen_kind(given.get(tag, default), registry)
    if kind is None:
        return  # pydantic reports the unknown tag, listing the registered ones
    fields = registry.get(kind).model_fields
    for key in given:
        belongs = owners(registry, key)
        if key not in fields and belongs:
            raise PydanticCustomError(
                "kind_key",
                "{path} applies to {label} {kinds} only ({label} is {kind})",
                {
                    "path": f"{prefix}{key}",
                    "label": label,
                    "kinds": ", ".join(belongs),
                    "kind": kind,
                },
            )


def nest_flat(
    data: dict[str, Any], key: str, registry: KindRegistry, tag: str, default: str, prefix: str
) -> dict[str, Any]:
    """Gather the flat tag ``data[key]`` and its sibling options into one mapping.

    ``{"backbone": "resnet18", "cifar_stem": True, "dim": 64}`` becomes
    ``{"backbone": {"kind": "resnet18", "cifar_stem": True}, "dim": 64}``.
    """
    value = data.get(key, default)
    if isinstance(value, BaseModel):
        value = value.model_dump()
    nested = dict(value) if isinstance(value, Mapping) else {tag: value}
    out = {}
    for k, v in data.items():
        if k in option_keys(registry, tag):
            nested[k] = v
        elif k != key:
            out[k] = v
    check_applies(nested, registry, tag, default, key, prefix)
    return {key: nested, **out}


def flatten(data: dict[str, Any], key: str, tag: str) -> dict[str, Any]:
    """The inverse of :func:`nest_flat`: the tag back under ``key``, options beside it."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k == key and isinstance(v, dict):
            out[k] = v[tag]
            out.update({o: w for o, w in v.items() if o != tag})
        else:
            out[k] = v
    return out
