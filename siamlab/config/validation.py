"""Validate a merged config dict and turn pydantic's errors into messages for people."""

import difflib
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from siamlab.config.kinds import chosen_kind, option_keys, owners
from siamlab.config.schema import RunConfig
from siamlab.config.unions import UNIONS, Union
from siamlab.errors import ConfigError

BY_PATH = {u.path: u for u in UNIONS}
FLAT = {".".join(u.options_path()): u.path for u in UNIONS if u.flat}


def _user_path(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """``loc`` without the union tags pydantic inserts, and flat options one level up."""
    out: list[str] = []
    for part in map(str, loc):
        joined = ".".join(out)
        if joined in BY_PATH and part in BY_PATH[joined].registry:
            if joined in FLAT.values():
                out.pop()  # model.backbone.resnet18.cifar_stem -> model.cifar_stem
            continue
        out.append(part)
    return tuple(out)


def _union_at(dotted: str) -> Union | None:
    """The union whose options sit in the mapping at ``dotted`` (nested or flat)."""
    return BY_PATH.get(dotted) or BY_PATH.get(FLAT.get(dotted, ""))


def _chosen_kind(raw: Mapping[str, Any], union: Union) -> str | None:
    """The kind ``raw`` picks for ``union`` (its default where unset); None if unregistered."""
    node: Any = raw
    for key in union.tag_path():
        node = node.get(key) if isinstance(node, Mapping) else None
    if isinstance(node, Mapping):  # a flat tag written as a mapping of its own
        node = node.get(union.tag)
    return chosen_kind(union.default if node is None else node, union.registry)


def _options(union: Union, kind: str | None) -> set[str]:
    """The option keys of ``kind`` (of every kind where None), the tag excluded."""
    if kind is None:
        return option_keys(union.registry, union.tag)
    return set(union.registry.get(kind).model_fields) - {union.tag}


def _keys_at(path: tuple[str, ...], kind: str | None) -> list[str]:
    """The valid keys of the mapping at ``path``; a union's options those of ``kind``."""
    dotted = ".".join(path)
    union = _union_at(dotted)
    if dotted in BY_PATH and union is not None:
        return sorted(_options(union, kind) | {union.tag})
    model: type[BaseModel] = RunConfig
    for key in path:
        field = model.model_fields.get(key)
        if field is None:
            return []
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        sub = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if sub is None:
            return []
        model = sub
    keys = set(model.model_fields)
    if union is not None:  # flat: the chosen kind's options sit beside its tag
        keys |= _options(union, kind)
    return sorted(keys)


def _other_kinds(union: Union, kind: str) -> dict[str, list[str]]:
    """Options of kinds other than ``kind`` -> the kinds that have them."""
    return {
        k: owners(union.registry, k) for k in sorted(_options(union, None) - _options(union, kind))
    }


def _unknown_key(loc: tuple[str, ...], raw: Mapping[str, Any]) -> str:
    """The message for key ``loc[-1]`` that the mapping at ``loc[:-1]`` does not have.

    Where that mapping holds a union's options, the valid keys are those of the kind
    ``raw`` chose, and a near miss of another kind's option says which kinds have it.
    """
    path, parent = ".".join(loc), loc[:-1]
    union = _union_at(".".join(parent))
    kind = None if union is None else _chosen_kind(raw, union)
    valid = _keys_at(parent, kind)
    label = "" if union is None else ".".join(union.tag_path())
    other = {} if union is None or kind is None else _other_kinds(union, kind)
    close = difflib.get_close_matches(loc[-1], [*valid, *other], n=1)
    hint = f"; did you mean {'.'.join([*parent, close[0]])!r}?" if close else ""
    if close and close[0] in other:
        kinds = ", ".join(other[close[0]])
        hint += f" That one applies to {label} {kinds} only, and {label} is {kind}"
    where = f" for {label} {kind}" if union is not None and kind is not None else ""
    return f"unknown key {path!r}{hint} (valid keys here{where}: {', '.join(valid)})"


def _describe(error: Any, raw: Mapping[str, Any]) -> str:
    loc = _user_path(tuple(error["loc"]))
    path = ".".join(loc)
    if error["type"] == "kind_key":  # an option of another kind: the message says it all
        return str(error["msg"])
    if error["type"] == "union_tag_invalid":
        ctx = error.get("ctx", {})
        kinds = str(ctx.get("expected_tags", "")).replace("'", "")
        what = BY_PATH[path].registry.kind if path in BY_PATH else "name"
        return f"{path}: unknown {what} {ctx.get('tag')!r}; registered: {kinds}"
    if error["type"] == "extra_forbidden":
        return _unknown_key(loc, raw)
    if error["type"] == "value_error":  # our own validators: the message says it all
        msg = str(error["msg"]).removeprefix("Value error, ")
        return msg if path and msg.startswith(path) else f"{path or 'config'}: {msg}"
    got = error.get("input")
    return f"{path}: {error['msg']} (got {got!r})"


def validate_config(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a RunConfig from a merged dict.

    Args:
        raw: the merged partial configs.
        where: a description of the source, for the message (e.g. a run name).

    Raises:
        ConfigError: naming every wrong key path and what is allowed there.
    """
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw) for e in exc.errors()]
        raise ConfigError(f"invalid {where}:\n  " + "\n  ".join(lines)) from None
