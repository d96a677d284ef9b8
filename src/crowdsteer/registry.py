"""Name -> implementation registries, so a YAML file can say ``{name: rbf, ...}``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from crowdsteer.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to implementations of one concept.

    Registering two implementations under one name raises ``ValueError``;
    looking up an unknown name raises :class:`ConfigError` with a did-you-mean.

    Examples
    --------
    >>> reg = Registry("colour")
    >>> @reg.register("red")
    ... class Red: ...
    >>> reg.get("red").__name__
    'Red'
    >>> reg.get("rde")
    Traceback (most recent call last):
    ...
    crowdsteer.errors.ConfigError: colour: unknown name 'rde' (did you mean 'red'?); allowed: red
    """

    def __init__(self, concept: str) -> None:
        self.concept = concept
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.concept} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, field: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(field or self.concept, unknown_name_message(name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(name: str, allowed: list[str]) -> str:
    """One line: the unknown name, the closest allowed one, and the allowed set."""
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown name {name!r}{hint}; allowed: {', '.join(allowed)}"
