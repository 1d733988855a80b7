"""The /proc scan that finds what runs inside our namespaces (another agent's haproxy), on a
real namespace: a process in it is found with its name, one outside is not, and one that
ended is gone."""

from __future__ import annotations

import os
import subprocess

import pytest

from ovnmeta.host import foreign, namespace

NS, OTHER = "omtest-scan", "omtest-scan-2"


@pytest.fixture
def namespaces():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for ns in (NS, OTHER):
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        yield {ns: f"{namespace.NETNS_DIR}/{ns}" for ns in (NS, OTHER)}
    finally:
        for ns in (NS, OTHER):
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_processes_are_found_in_the_namespace_they_run_in(namespaces) -> None:
    inside = subprocess.Popen(["ip", "netns", "exec", NS, "sleep", "60"])
    outside = subprocess.Popen(["sleep", "60"])
    try:
        seen = False
        for _ in range(100):   # `ip netns exec` enters the namespace, then execs sleep
            found = foreign.in_namespaces(namespaces)
            if [p.name for p in found.get(NS, [])] == ["sleep"]:
                seen = True
                break
            subprocess.run(["sleep", "0.02"])
        assert seen, found
        assert [p.pid for p in found[NS]] == [inside.pid]
        assert OTHER not in found
        assert outside.pid not in {p.pid for ps in found.values() for p in ps}
        inside.kill()
        inside.wait()
        assert foreign.in_namespaces(namespaces) == {}
        assert foreign.in_namespaces({}) == {}
    finally:
        for p in (inside, outside):
            p.kill()
            p.wait()
