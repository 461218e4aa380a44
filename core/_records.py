"""Frozen records compared by their fields, for the breaker's internal values (``Observation``, ``Transition``,
``Decision``, ``SharedState``): what ``@dataclass(frozen=True, slots=True)`` makes, written out. Making four such
dataclasses (each class built twice, its methods compiled from generated source) was ~3.5 ms of
``import agentwatch``."""

from __future__ import annotations

from typing import Any

__all__ = ["FrozenRecord", "set_field"]

#: How a record's ``__init__`` sets a field (its own ``__setattr__`` refuses), as a frozen dataclass's does.
set_field = object.__setattr__


class FrozenRecord:
    """A subclass names its fields in ``__slots__``, in order, and sets them in ``__init__`` through ``set_field`` (as a
    frozen dataclass does). Equal to a record of the same class with equal fields, hashed by its fields, and shown
    as ``Name(field=value, ...)``; assigning or deleting a field raises ``AttributeError``."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__slots__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self._fields()
