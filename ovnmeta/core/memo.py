"""Memoised pure functions whose memory follows what is live, not what ever was.

An lru_cache sized for a big host fills up over weeks of networks created and deleted on a
small one, and its entries stay: the agent's RSS then grows for hours before it levels off.
A generational memo keeps the answers used in the current period and the one before; an
answer nobody asked for in two periods goes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

R = TypeVar("R")


class Generational(Generic[R]):
    """fn(*args) memoised for at least `period` seconds after its last use (positional
    arguments only: they are the key).

    Safe without a lock under the GIL: a turn racing a call can only lose an entry, which is
    computed again."""

    def __init__(self, fn: Callable[..., R], period: float = 300.0, limit: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fn, self.period, self.limit, self.clock = fn, period, limit, clock
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self._now: dict[tuple[Any, ...], R] = {}
        self._old: dict[tuple[Any, ...], R] = {}
        self._turned = clock()

    def __call__(self, *args: Any) -> R:
        try:
            return self._now[args]
        except KeyError:
            pass
        if self.clock() - self._turned >= self.period or len(self._now) >= self.limit:
            self.turn()
        old = self._old.pop(args, _MISSING)
        value = self.fn(*args) if old is _MISSING else cast(R, old)
        self._now[args] = value
        return value

    def turn(self) -> None:
        self._old, self._now, self._turned = self._now, {}, self.clock()

    def __len__(self) -> int:
        return len(self._now) + len(self._old)


_MISSING = object()


def generational(period: float = 300.0, limit: int = 65536
                 ) -> Callable[[Callable[..., R]], Generational[R]]:
    """Decorator form of Generational."""
    def wrap(fn: Callable[..., R]) -> Generational[R]:
        return Generational(fn, period, limit)
    return wrap
