"""Validate a merged config dict and turn pydantic's errors into messages for people."""

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from siamlab.config.kinds import option_keys
from siamlab.config.schema import RunConfig
from siamlab.config.unions import UNIONS
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


def _keys_at(path: tuple[str, ...]) -> list[str]:
    """The valid keys of the mapping at ``path`` (every kind's options for a union)."""
    dotted = ".".join(path)
    if dotted in BY_PATH:
        union = BY_PATH[dotted]
        return sorted(option_keys(union.registry, union.tag) | {union.tag})
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
    if dotted in FLAT:
        keys |= set(_keys_at(tuple(FLAT[dotted].split("."))))
        keys.discard("kind")
    return sorted(keys)


def _describe(error: Any) -> str:
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
        valid = _keys_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"; did you mean {'.'.join([*loc[:-1], close[0]])!r}?" if close else ""
        return f"unknown key {path!r}{hint} (valid keys here: {', '.join(valid)})"
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
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"invalid {where}:\n  " + "\n  ".join(lines)) from None
