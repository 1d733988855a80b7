"""Prometheus endpoint and systemd notify on a real agent (two worker processes): counts per
network match the requests VMs sent, haproxy's 429s show per network, READY comes once the
VMs are served, a network gone takes its series with it."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ovnmeta_testing.sandbox import free_port, wait_until
from ovnmeta_testing.sbmodes import URL, Cloud


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def delta(before, after, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def fetch(vm, n: int) -> list[int]:
    """n GETs in a row; a request that got no answer counts as 0 (curl's 000). The shell's
    exit status is the last curl's, so it is not checked: before the VM's network is served
    curl fails to connect (exit 7), which is an answer here, not an error."""
    out = vm.exec("sh", "-c", f"for i in $(seq {n}); do curl -s -m 5 -o /dev/null"
                  f" -w '%{{http_code}} ' {URL}; done", check=False).stdout
    return [int(code) for code in out.split()]


def test_scrape_counts_what_vms_sent_and_systemd_hears_ready(sandbox, tmp_path,
                                                              monkeypatch) -> None:
    port = free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    cloud = Cloud(sandbox, tmp_path)
    cloud.agent.config.write_text(
        cloud.agent.config.read_text()
        .replace("[metrics]\nlisten =\n", f"[metrics]\nlisten = 127.0.0.1:{port}\n")
        # Two processes share the socket: the endpoint must add up both.
        .replace("[DEFAULT]\n", "[DEFAULT]\nmetadata_workers = 2\n", 1)
        # The agent's own counts: every request through it (test_direct_path has the rest).
        .replace("[haproxy]\n", "[haproxy]\ndirect_path = false\n", 1)
        + "[metadata_rate_limiting]\nrate_limit_enabled = true\n"
          "base_window_duration = 60\nbase_query_rate_limit = 30\n"
          "burst_window_duration = 60\nburst_query_rate_limit = 30\n")
    try:
        cloud.agent.start()
        quiet, busy = cloud.network(), cloud.network()
        vm_quiet, vm_busy = cloud.vm(quiet, probe=False), cloud.vm(busy, probe=False)
        messages = []
        wait_until(lambda: messages.append(notify.recv(4096).decode()) or any(
            "STATUS=serving 2 network(s), 2 VM port(s)" in m for m in messages),
            timeout=60, what="systemd told both networks are served")
        assert sum("READY=1" in m for m in messages) == 1
        assert any("WATCHDOG=1" in m for m in messages)
        wait_until(lambda: fetch(vm_quiet, 1) == [200] and fetch(vm_busy, 1) == [200],
                   timeout=30, what="both VMs served")

        before = scrape(port)
        quiet_codes, busy_codes = fetch(vm_quiet, 5), fetch(vm_busy, 40)
        after = scrape(port)

        assert quiet_codes == [200] * 5
        assert busy_codes.count(429) > 0 and set(busy_codes) == {200, 429}
        assert delta(before, after, "ovnmeta_requests_total", network=quiet.id,
                     status="200") == 5
        assert delta(before, after, "ovnmeta_requests_total", network=busy.id,
                     status="200") == busy_codes.count(200)
        # haproxy's side, by network: everything received, the 429s it denied itself.
        assert delta(before, after, "ovnmeta_haproxy_requests_total", network=quiet.id) == 5
        assert delta(before, after, "ovnmeta_haproxy_requests_total", network=busy.id) == 40
        assert delta(before, after, "ovnmeta_haproxy_denied_requests_total",
                     network=busy.id) == busy_codes.count(429)
        nova = [k for k in after if k[0] == "ovnmeta_nova_request_duration_seconds_count"]
        assert sum(after[k] - before.get(k, 0) for k in nova) == 5 + busy_codes.count(200)
        assert after[("ovnmeta_networks_served", ())] == 2
        assert after[("ovnmeta_vms_served", ())] == after[("ovnmeta_vms_bound", ())] == 2
        assert after[("ovnmeta_sb_connected", ())] == 1
        assert 0 <= after[("ovnmeta_sb_last_update_age_seconds", ())] < 600
        assert after[("ovnmeta_haproxy_reloads_total", ())] >= 1
        # `ovnmeta status` shows the headline numbers from the same counters.
        out = subprocess.run([str(Path(sys.executable).parent / "ovnmeta"), "--config-file",
                              str(cloud.agent.config), "status"], capture_output=True,
                             text=True).stdout
        assert "req/s" in out and "nova latency" in out and "last SB update" in out, out

        # The busy network's last VM leaves: its series go from the scrape, though both
        # processes' files still hold them; the quiet network's stay.
        cloud.remove_vm(vm_busy)
        wait_until(lambda: not any(dict(key[1]).get("network") == busy.id
                                   for key in scrape(port)),
                   timeout=60, what="the busy network's series gone from the scrape")
        assert scrape(port)[("ovnmeta_requests_total",
                             (("network", quiet.id), ("status", "200")))] >= 6
    finally:
        cloud.close()
        notify.close()
