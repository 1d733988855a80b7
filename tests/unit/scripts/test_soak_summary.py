"""The soak's summary of the agent's RSS and fds once it has settled."""

from __future__ import annotations

from ovnmeta_testing.soak import settled


def _samples(fds: list[int], rss_mib: float = 60.0) -> list[dict]:
    return [{"minute": float(m), "rss_kib": int((rss_mib + m / 100) * 1024), "fds": f,
             "networks": 3} for m, f in enumerate(fds)]


def test_the_fewest_fds_per_window_ignore_connections_in_flight_but_not_a_leak() -> None:
    steady = [30] * 10 + [28, 33, 28, 35, 28, 29, 28, 34, 28, 28] * 2
    s = settled(_samples(steady), after=10, window=10)
    assert s["samples"] == 20 and (s["fds_min"], s["fds_max"]) == (28, 35)
    assert s["fds_fewest_per_window"] == [28, 28]
    leaking = [30] * 10 + [28 + m for m in range(20)]
    assert settled(_samples(leaking), after=10, window=10)["fds_fewest_per_window"] == [28, 38]


def test_rss_range_counts_only_after_the_first_minutes() -> None:
    s = settled(_samples([30] * 30, rss_mib=60.0), after=10)
    assert s["rss_mib_min"] == 60.1 and s["rss_mib_max"] == 60.3
    assert settled(_samples([30] * 5), after=10) == {}
