"""The SB-scale benchmark's report (ovnmeta_testing.sbscale.report), pure: the fit and the
projection it prints, and the table's rows, from a small results dict like the one the
benchmark writes."""

from __future__ import annotations

import pytest

from ovnmeta_testing.sbscale import report


def run(agents: int, cost: float, layout: str = "direct", kind: str = "ovnmeta") -> dict:
    """A run whose every projected metric is `cost` per agent, on top of 1.0."""
    m = {"sb_cpu_s": 1.0 + cost * agents, "leader_cpu_s": 1.0 + cost * agents,
         "relays_cpu_s": 0.5, "sb_cpu_per_s": 1.0 + cost * agents,
         "leader_cpu_per_s": 1.0 + cost * agents, "relays_cpu_per_s": 0.1}
    return {"layout": layout, "kind": kind, "agents": agents, "relays": 0,
            "load": {**m, "all_loaded_s": 3.1, "bytes_to_agents": 140_000 * agents,
                     "per_agent_pss_kib": 1740, "machine_busy": 0.7},
            "churn": {**m, "bytes_per_s": 3300.0 + cost * agents, "agents_cpu_per_s": 0.013,
                      "machine_busy": 0.04},
            "liveness": [{"seconds": 0.14, **m}, {"seconds": 0.13, **m}],
            "reconnect": {**m, "all_back_s": 5.9}}


def test_a_cost_linear_in_k_is_fitted_and_projected_exactly() -> None:
    rows = report.projection({"runs": [run(25, 0.1), run(50, 0.1), run(100, 0.1)]})
    load = next(r for r in rows if r["metric"] == "load.sb_cpu_s")
    assert load["per_agent"] == pytest.approx(0.1)
    assert load["at_1000"] == pytest.approx(101.0) and load["at_5000"] == pytest.approx(501.0)
    assert load["measured"] == {25: 3.5, 50: 6.0, 100: 11.0}
    assert {r["metric"] for r in rows} == {"load.sb_cpu_s", "load.bytes_to_agents",
                                           "churn.sb_cpu_per_s", "churn.bytes_per_s",
                                           "reconnect.sb_cpu_s"}


def test_the_exponent_says_how_a_cost_grows_with_k() -> None:
    assert report._fit([(10, 10.0), (100, 100.0)])["exponent"] == 1.0   # noqa: SLF001
    assert report._fit([(10, 100.0), (1000, 1000.0)])["exponent"] == 0.5   # noqa: SLF001
    assert report._fit([(10, 0.0), (20, 0.0)])["exponent"] is None   # noqa: SLF001


def test_one_k_is_not_projected_and_relays_are_fitted_on_the_leader() -> None:
    assert report.projection({"runs": [run(25, 0.1)]}) == []
    rows = report.projection({"runs": [run(50, 0.2, "relay"), run(100, 0.2, "relay")]})
    assert {r["metric"] for r in rows} >= {"load.leader_cpu_s", "load.bytes_to_agents"}


def test_the_table_has_a_row_per_run_and_the_memory_rows() -> None:
    results = {"runs": [run(25, 0.1), run(25, 1.0, kind="neutron")],
               "memory": [{"ports": 2000, "kind": "ovnmeta", "rss_mib": 2.45,
                           "pss_mib": 2.4, "rows": {"Port_Binding": 270, "Chassis": 8}}]}
    results["projection"] = report.projection(results)
    text = report.table(results)
    lines = text.splitlines()
    assert lines[0].startswith("layout | kind | K | load s")
    assert lines[2].startswith("direct | ovnmeta | 25 | 3.1 | 3.5 | 3.5 | 1.7")
    assert lines[3].startswith("direct | neutron | 25 | 3.1 | 26.0 |")
    assert "2000 | ovnmeta | 2.45 | 2.4 | 278" in text
