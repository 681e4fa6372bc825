"""Validate a merged config dict and turn pydantic's errors into messages for people."""

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from siamlab.config.schema import RunConfig
from siamlab.errors import ConfigError


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model class found by following ``path`` from RunConfig."""
    model: type[BaseModel] = RunConfig
    for key in path:
        field = model.model_fields.get(str(key))
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        sub = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if sub is None:
            return None
        model = sub
    return model


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    path = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
        return f"unknown key {path!r}{hint} (valid keys here: {', '.join(valid)})"
    if error["type"] == "value_error":  # our own validators: the message says it all
        return f"{path or 'config'}: {error['msg'].removeprefix('Value error, ')}"
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
