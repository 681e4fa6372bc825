"""A name -> object registry, one per kind of component (timm style).

Config classes register torch-free (``siamlab.models.config``, ``siamlab.data.dataset_config``,
``siamlab.eta.config``, ``siamlab.config.objective``); the torch builders register under the
same names next to their code, and ``tests/test_registry.py`` checks the two sets agree.
"""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from siamlab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects of one kind (backbones, predictors, ...) by name, in registration order.

    Args:
        kind: what is registered, for messages (e.g. ``"backbone"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate

    def get(self, name: str) -> T:
        """The entry called ``name``.

        Raises:
            ConfigError: for an unknown name, listing the registered ones.
        """
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs, in registration order."""
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
