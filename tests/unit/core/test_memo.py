"""The generational memo: answers stay while used, go when not, within a bound."""

from __future__ import annotations

from ovnmeta.core.memo import Generational


def make(period: float = 10.0, limit: int = 100):
    clock = {"now": 0.0}
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x
    return Generational(square, period, limit, clock=lambda: clock["now"]), clock, calls


def test_an_answer_in_use_is_computed_once() -> None:
    memo, clock, calls = make()
    for step in range(100):
        clock["now"] = step          # ten periods, asked every second
        assert memo(3) == 9
        memo(step)                   # misses that turn the generations
    assert calls.count(3) == 1


def test_an_answer_nobody_asks_for_goes_within_two_periods() -> None:
    memo, clock, calls = make()
    memo(1)
    clock["now"] = 10
    memo(2)                          # a miss: turns, 1 kept as the old generation
    assert len(memo) == 2
    clock["now"] = 20
    memo(3)                          # turns again: 1 is gone, 2 is old
    assert len(memo) == 2
    memo(1)
    assert calls == [1, 2, 3, 1]


def test_the_limit_bounds_memory_between_turns() -> None:
    memo, _, _ = make(period=1e9, limit=5)
    for x in range(1000):
        memo(x)
    assert len(memo) <= 10
