"""Pydantic base model and error translation shared by every config section.

Every float a config holds is finite and at most :data:`MAX_MAGNITUDE` in size, and so is
every entry of a ``.npy`` array it names: NaN, infinity or a number near the float64 limit
would only fail much later (as a NaN exploitability or objective, naming no field), so
they are refused at load time with the field's name.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict

from crowdsteer.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

MAX_MAGNITUDE = 1e100
"""Largest absolute value a config float or a loaded array entry may have. Rewards and
targets are summed over a grid, squared (kernels, variances) and exponentiated after a
division by the temperature; below 1e100 a square or a sum over 1e100 cells stays finite
in float64 (about 1.8e308), above it overflow to infinity or NaN is a matter of time."""

FINITE = "allowed: finite numbers"


def _allows_bool(annotation: Any) -> bool:
    """Whether a field annotated ``annotation`` may take ``true``/``false``: not a number
    (``int`` or ``float``, alone or with ``None``), where pydantic would read true as 1."""
    if annotation is bool or annotation is Any:
        return True
    args = getattr(annotation, "__args__", None)
    if args:
        return any(_allows_bool(a) for a in args if a is not type(None))
    return not (isinstance(annotation, type) and issubclass(annotation, (int, float)))


def _as_text(value: Any) -> Any:
    """``value`` with every bool, also inside nested lists and tuples, as the text it was
    written as (``true``, ``false``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        shown = [_as_text(v) for v in value]
        return shown if isinstance(value, list) else tuple(shown)
    return value


def _too_large(value: Any) -> float | None:
    """The largest magnitude among the floats in ``value`` (nested lists and tuples) if it
    exceeds :data:`MAX_MAGNITUDE`, else ``None``."""
    if isinstance(value, float):
        return abs(value) if abs(value) > MAX_MAGNITUDE else None
    if isinstance(value, (list, tuple)):
        found = [m for m in map(_too_large, value) if m is not None]
        return max(found) if found else None
    return None


class Strict(BaseModel):
    """Config model: unknown keys are refused, values are validated on assignment, and every
    float (also inside lists) must be finite and at most :data:`MAX_MAGNITUDE` in size."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """``true``/``false`` for a number, also inside a list, is refused (pydantic would
        read true as 1): it is handed on as the text it was written as, which the number
        field refuses by name (and index)."""
        if not isinstance(data, dict):
            return data
        fields = {f.alias or n: f for n, f in cls.model_fields.items()}
        return {k: _as_text(v) if k in fields and not _allows_bool(fields[k].annotation)
                else v for k, v in data.items()}

    @pydantic.field_validator("*", mode="after")
    @classmethod
    def _not_huge(cls, value: Any) -> Any:
        big = _too_large(value)
        if big is not None:
            raise ValueError(f"a number of size {big:.3g}; {FINITE} of size at most "
                             f"{MAX_MAGNITUDE:.0e} (larger ones overflow later)")
        return value


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring = 2, 4, 4, 60


def shown(value: Any) -> str:
    """``repr`` of a user's value cut short (a few items, two levels, 60 characters a
    string): an error message never prints a whole expanded value."""
    return _SHOWN.repr(value)


def validate(model: type[M], data: Any, field: str) -> M:
    """Validate ``data`` into ``model``; the first error becomes a one-line :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(field, f"expected a mapping, got {type(data).__name__} {shown(data)}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc, field, model) from None


def from_pydantic(
    exc: pydantic.ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> ConfigError:
    errors = exc.errors()
    # in a union (``list[float] | list[list[float]]``) every member reports; a non-finite
    # number is the real complaint wherever it shows up
    err = next((e for e in errors if e["type"] == "finite_number"), errors[0])
    parts = list(err["loc"])
    last = parts.pop() if err["type"] == "extra_forbidden" and parts else None  # a user's key
    loc = ".".join([str(p) for p in parts if not _is_tag(p)] + ([str(last)] if last else []))
    path = ".".join(p for p in (prefix, loc) if p)
    msg = err["msg"]
    if err["type"] == "finite_number":
        msg = f"not a finite number; {FINITE}"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(model, err["loc"][:-1])) or "none"
        msg = f"unknown field; allowed here: {allowed}"
    elif "input" in err and err["type"] not in ("missing", "value_error"):
        msg = f"{msg} (got {shown(err['input'])})"
    msg = msg.removeprefix("Value error, ")
    return ConfigError(path, msg)


def _is_tag(part: Any) -> bool:
    """Whether a pydantic error location part names a validator or a union member
    (``function-after[...]``, ``list[float]``) rather than a field or an index."""
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


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


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype a ``.npy`` file's header declares, checked against the file's size.

    Reading the header first means a file that claims an absurd shape (a tampered or
    truncated file) is refused without numpy trying to allocate it.

    Raises
    ------
    ValueError
        Not a ``.npy`` file, a header numpy cannot parse, an object dtype, or a declared
        size that differs from the bytes the file holds.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # 3.0 only differs for structured dtypes with non-Latin-1 names
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects (allowed: numeric arrays)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = Path(path).stat().st_size - offset
    if declared != held:
        raise ValueError(f"its header declares shape {tuple(shape)} of {dtype} "
                         f"({declared:,} bytes) but the file holds {held:,} bytes of data")
    return tuple(shape), dtype


def read_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles, after :func:`npy_header` has checked the declared size."""
    npy_header(path)
    return np.load(path, allow_pickle=False)


def check_values(arr: np.ndarray, field: str, what: str = "") -> np.ndarray:
    """Refuse NaN, infinities and entries above :data:`MAX_MAGNITUDE`, naming ``field``."""
    where = f"{what} " if what else ""
    if not np.all(np.isfinite(arr)):
        raise ConfigError(field, f"{where}contains NaN or infinite values; {FINITE}")
    big = float(np.max(np.abs(arr))) if arr.size else 0.0
    if big > MAX_MAGNITUDE:
        raise ConfigError(field, f"{where}has entries as large as {big:.3g}; {FINITE} of "
                          f"size at most {MAX_MAGNITUDE:.0e} (larger ones overflow later)")
    return arr


def load_npy(path: str | Path, field: str, base_dir: Path | None = None) -> np.ndarray:
    """Load a real, finite ``.npy`` array, relative to the config file's folder; errors name
    ``field``. Complex arrays are refused (their imaginary part would be dropped), as are
    NaN, infinities and entries above :data:`MAX_MAGNITUDE`."""
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.suffix != ".npy":
        raise ConfigError(field, f"expected a path to a .npy file, got {str(path)!r}")
    if not p.is_file():
        raise ConfigError(field, f"file not found: {p}")
    try:
        arr = read_npy(p)
    except Exception as exc:  # numpy raises several types for corrupt files
        raise ConfigError(field, f"cannot read {p} as a .npy array ({exc})") from None
    if np.iscomplexobj(arr):
        raise ConfigError(field, f"{p} holds complex numbers; allowed: real numbers")
    if not np.issubdtype(arr.dtype, np.number):
        raise ConfigError(field, f"{p} holds {arr.dtype} values; a numeric array is needed")
    return check_values(arr.astype(float), field, str(p))
