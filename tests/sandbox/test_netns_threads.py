"""Threads entering namespaces at the same time each come back where they were (pyroute2's
pushns/popns, shared by all threads, left a test driver's main thread in a VM's namespace
in a 100,000-request run, and the agent it then started could not reach nova)."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from ovnmeta.host.namespace import entered

NAMES = ("omtest-thr-a", "omtest-thr-b")


def _here() -> str:
    return os.readlink("/proc/thread-self/ns/net")


@pytest.fixture
def two_namespaces():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for name in NAMES:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield {name: os.readlink(f"/run/netns/{name}") if os.path.islink(f"/run/netns/{name}")
           else f"net:[{os.stat(f'/run/netns/{name}').st_ino}]" for name in NAMES}
    for name in NAMES:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_threads_entering_namespaces_at_once_each_come_back(two_namespaces) -> None:
    home = _here()
    wrong: list[str] = []

    def churn(name: str) -> None:
        mine = _here()
        for _ in range(3000):
            with entered(name):
                if _here() != two_namespaces[name]:
                    wrong.append(f"inside {name}: {_here()}")
            if _here() != mine:
                wrong.append(f"after {name}: {_here()}")

    threads = [threading.Thread(target=churn, args=(n,)) for n in NAMES]
    for t in threads:
        t.start()
    churn(NAMES[0])  # the main thread too, as the test driver's does
    for t in threads:
        t.join()
    assert wrong == [] and _here() == home


def test_a_missing_namespace_is_an_error_not_created() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(OSError):
        with entered("omtest-thr-never-made"):
            pass
    assert not os.path.exists("/run/netns/omtest-thr-never-made")
