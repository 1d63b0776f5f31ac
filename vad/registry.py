"""A small registry by name: scorers, stores, describers, deducers, LLM backends, answerers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from vad.errors import VadError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return wrap

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            raise VadError(f"unknown {self.kind} {name!r}; available: "
                           f"{', '.join(self.names())}") from None

    def create(self, name: str, **params) -> T:
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**params)
        except TypeError as exc:
            raise VadError(f"{self.kind} {name!r}: {exc}") from None
        return factory(**params)
