"""Pydantic base model and error translation shared by every config section."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict

from crowdsteer.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Config model: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validate(model: type[M], data: Any, field: str) -> M:
    """Validate ``data`` into ``model``; the first error becomes a one-line :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(field, f"expected a mapping, got {type(data).__name__} {data!r}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc, field, model) from None


def from_pydantic(
    exc: pydantic.ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    path = ".".join(p for p in (prefix, loc) if p)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(model, err["loc"][:-1])) or "none"
        msg = f"unknown field; allowed here: {allowed}"
    elif "input" in err and err["type"] not in ("missing", "value_error"):
        msg = f"{msg} (got {err['input']!r})"
    msg = msg.removeprefix("Value error, ")
    return ConfigError(path, msg)


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names, as spelled in a config (aliases), of the (sub)model at ``loc``."""
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):  # an index into a list of submodels
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        if part not in fields:
            break
        model = _submodel(fields[part].annotation)
    return sorted(f.alias or n for n, f in model.model_fields.items()) if model else []


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def load_npy(path: str | Path, field: str, base_dir: Path | None = None) -> np.ndarray:
    """Load a ``.npy`` array, relative to the config file's folder; errors name ``field``."""
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.suffix != ".npy":
        raise ConfigError(field, f"expected a path to a .npy file, got {str(path)!r}")
    if not p.is_file():
        raise ConfigError(field, f"file not found: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for corrupt files
        raise ConfigError(field, f"cannot read {p} as a .npy array ({exc})") from None
    if not np.issubdtype(arr.dtype, np.number):
        raise ConfigError(field, f"{p} holds {arr.dtype} values; a numeric array is needed")
    return arr.astype(float)
