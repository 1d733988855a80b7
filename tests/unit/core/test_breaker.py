from ovnmeta.core.breaker import Breaker


def test_closed_until_nova_fails_then_open_for_the_cooldown() -> None:
    b = Breaker(cooldown=2.0)
    assert b.allow(0.0) and b.allow(0.0)
    b.failed(10.0)
    assert not b.allow(10.5) and not b.allow(11.9)
    assert b.retry_after(10.5) == 2 and b.retry_after(11.9) == 1
    assert b.openings == 1


def test_half_open_lets_one_probe_through_whose_outcome_decides() -> None:
    b = Breaker(cooldown=2.0)
    b.failed(0.0)
    assert b.allow(2.0)            # the probe
    assert not b.allow(2.1)        # one at a time
    b.failed(3.0)                  # still failing: open again, not a new opening
    assert not b.allow(4.0) and b.openings == 1
    assert b.allow(5.0)
    b.succeeded()
    assert b.closed and b.allow(5.1) and b.allow(5.1)


def test_a_probe_that_never_asked_frees_the_slot() -> None:
    b = Breaker(cooldown=1.0)
    b.failed(0.0)
    assert b.allow(1.0)
    b.released()
    assert b.allow(1.0)


def test_gateway_errors_open_it_and_an_instances_500_does_not() -> None:
    b = Breaker()
    b.record(500, 0.0)
    assert b.closed
    for status in (502, 503, 504):
        b = Breaker()
        b.record(status, 0.0)
        assert not b.closed
    b.record(200, 0.1)
    assert b.closed
