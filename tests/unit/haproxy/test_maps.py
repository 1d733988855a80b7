"""The direct path's pure parts (maps, commands, parsing) and MapSync against a real haproxy
on loopback."""

import ipaddress
import logging
import shutil
import stat
import time
from pathlib import Path

import pytest

from ovnmeta.haproxy import maps
from ovnmeta.haproxy import novawatch, runtime
from ovnmeta.core.model import PortRecord
from ovnmeta.core.portindex import PortIndex, mac_from_link_local
from ovnmeta.core.signing import sign_instance_id
from ovnmeta.haproxy.process import Process
from ovnmeta.haproxy.runtime import stats_command
from ovnmeta_testing.sandbox import free_port

needs_haproxy = pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed")


def vm(name: str, net: str, mac: str, *ips: str, device: str | None = None,
       project: str = "proj") -> PortRecord:
    ext = {"neutron:device_id": device if device is not None else f"inst-{name}",
           "neutron:project_id": project}
    return PortRecord(logical_port=name, type="", network_id=net,
                      mac=(" ".join((mac,) + ips),), external_ids=tuple(sorted(ext.items())),
                      bound_here=True)


PORTS = [vm("a", "n1", "fa:16:3e:00:00:0a", "10.0.0.10", "fd00::a"),
         vm("b", "n2", "fa:16:3e:00:00:0b", "10.0.0.10")]


def test_maps_hold_what_the_socket_path_would_answer() -> None:
    index = PortIndex.build(PORTS)
    wanted = maps.desired(index, None, "s3cret")
    assert set(wanted) == {"n1", "n2"}
    assert wanted["n1"]["10.0.0.10"] == f"inst-a|proj|{sign_instance_id('s3cret', 'inst-a')}"
    assert wanted["n2"]["10.0.0.10"].startswith("inst-b|")
    # Every key is answered the same way by the index: the EUI-64 link-local included.
    for net, entries in wanted.items():
        for address in entries:
            assert index.lookup(net, address).instance_id == entries[address].split("|")[0]
    link = [a for a in wanted["n1"] if a.startswith("fe80::")]
    assert link and mac_from_link_local(ipaddress.ip_address(link[0])) == "fa:16:3e:00:00:0a"


def test_unplugged_ports_and_unsafe_ids_are_left_to_the_agent() -> None:
    ports = PORTS + [vm("c", "n1", "fa:16:3e:00:00:0c", "10.0.0.12", device="x y\r\nX-Evil: 1"),
                     vm("d", "n1", "fa:16:3e:00:00:0d", "10.0.0.13", project="p;show info")]
    wanted = maps.desired(PortIndex.build(ports), {"a", "c", "d"}, "s")
    assert "n2" not in wanted                      # b is not plugged here
    assert "10.0.0.12" not in wanted["n1"] and "10.0.0.13" not in wanted["n1"]
    assert "10.0.0.10" in wanted["n1"]


def test_external_ports_need_no_interface_here() -> None:
    """A baremetal/SR-IOV port's binding is the authority: no OVS interface carries it."""
    import dataclasses
    bm = dataclasses.replace(vm("bm", "n3", "fa:16:3e:00:00:0e", "10.0.0.14"), type="external")
    index = PortIndex.build(PORTS + [bm])
    wanted = maps.desired(index, set(), "s")
    assert set(wanted) == {"n3"} and wanted["n3"]["10.0.0.14"].startswith("inst-bm|")
    assert index.lookup("n3", "10.0.0.14").answerable(set())
    assert not index.lookup("n1", "10.0.0.10").answerable(set())


def test_changes_remove_before_they_add() -> None:
    cmds = maps.changes("/m", {"1.1.1.1": "a", "2.2.2.2": "b"},
                              {"2.2.2.2": "c", "3.3.3.3": "d"})
    assert cmds == ["del map /m 1.1.1.1", "set map /m 2.2.2.2 c", "add map /m 3.3.3.3 d"]
    assert maps.changes("/m", {"1.1.1.1": "a"}, {"1.1.1.1": "a"}) == []
    assert maps.replacement("/m", {"1.1.1.1": "a"}) == ["clear map /m",
                                                              "add map /m 1.1.1.1 a"]


def test_batches_keep_order_and_size() -> None:
    cmds = [f"add map /m 10.0.{i // 256}.{i % 256} v" for i in range(2000)]
    out = maps.batches(cmds, limit=1000)
    assert all(len(b) <= 1000 for b in out)
    assert ";".join(out).split(";") == cmds


def test_parsers() -> None:
    assert runtime.worker_pid("Name: HAProxy\nPid: 4242\nUptime: 1\n") == 4242
    assert runtime.worker_pid("garbage") is None
    table = ("# table: ovnmeta_nova_answers, type: integer, size:64, used:2\n"
             "0x1: key=403 use=0 exp=0 gpc0=2\n0x2: key=500 use=0 exp=0 gpc0=1\n")
    assert novawatch.parse_answers(table) == {403: 2, 500: 1}
    csv = ("# pxname,svname,stot,econ,eresp,status\nx,BACKEND,9,9,9,UP\n"
           "ovnmeta_nova,nova0,1,1,1,UP\novnmeta_nova,BACKEND,8,3,4,UP\n")
    assert novawatch.parse_backend_errors(csv) == {"econ": 3, "eresp": 4, "stot": 8}
    busy = csv + "ovnmeta_nova_busy,nova0,5,1,0,UP\novnmeta_nova_busy,BACKEND,5,1,0,UP\n"
    assert novawatch.parse_backend_errors(busy) == {"econ": 4, "eresp": 4, "stot": 13}
    assert novawatch.parse_backend_errors("# pxname,svname,stot\n") == {}


class Haproxy:
    """A real master-worker haproxy on loopback whose frontends use the maps of `networks`,
    as the shared haproxy's do; `command` is the agent's stats-socket client, with a log."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.maps = tmp_path / "maps"
        self.stats = str(tmp_path / "h.stats")
        self.proc = Process("haproxy", tmp_path / "h.cfg", tmp_path / "h.pid",
                            master_worker=True)
        self.sent: list[str] = []

    def config(self, networks: list[str]) -> str:
        text = (f"global\n    stats socket {self.stats} mode 600 level admin\n"
                "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
                "    timeout server 5s\n")
        for net in networks:
            text += (f"frontend {net}\n    bind 127.0.0.1:{free_port()}\n"
                     f"    http-request return status 200 content-type text/plain "
                     f"lf-string \"%[src,map_ip({maps.map_path(self.maps, net)},-)]\"\n")
        return text

    def load(self, networks: list[str]) -> None:
        self.proc.write(self.config(networks), validate=False)
        self.proc.reload()

    def command(self, path: str, line: str) -> str:
        self.sent += line.split(";")
        return stats_command(path, line)

    def held(self, net: str) -> dict[str, str] | None:
        return maps.parse_show_map(
            stats_command(self.stats, f"show map {maps.map_path(self.maps, net)}"))

    def worker(self) -> int | None:
        try:
            return runtime.worker_pid(stats_command(self.stats, "show info"))
        except OSError:   # not started yet
            return None


@pytest.fixture
def haproxy(tmp_path):
    h = Haproxy(tmp_path)
    yield h
    h.proc.stop()


def converge(sync: maps.MapSync, hap: Haproxy, index: PortIndex,
             networks: list[str]) -> bool:
    """What the reconciler and the view follower do, in their order."""
    sync.prepare(networks)
    before = hap.worker()
    hap.load(networks)
    sync.served(networks, reloaded=True)
    deadline = time.monotonic() + 5
    while hap.worker() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    return sync.sync(index, None)


@needs_haproxy
def test_map_sync_writes_files_then_pushes_and_follows_a_new_worker(haproxy) -> None:
    sync = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    index = PortIndex.build(PORTS)
    assert converge(sync, haproxy, index, ["n1", "n2"])
    want = maps.desired(index, None, "s")
    assert haproxy.held("n1") == want["n1"] and haproxy.held("n2") == want["n2"]
    text = (haproxy.maps / "n1.map").read_text()
    assert "10.0.0.10 inst-a|proj|" in text
    assert stat.S_IMODE((haproxy.maps / "n1.map").stat().st_mode) == 0o600

    # A then gone, B with its address: removals go before additions, only the difference.
    haproxy.sent.clear()
    moved = PortIndex.build([vm("b2", "n1", "fa:16:3e:00:00:0e", "10.0.0.10"), PORTS[1]])
    assert sync.sync(moved, None)
    pushed = [c for c in haproxy.sent if not c.startswith("show")]
    assert not any(c.startswith("clear") for c in pushed)
    kinds = [c.split()[0] for c in pushed]
    assert kinds == sorted(kinds, key=["del", "set", "add"].index) and "del" in kinds
    assert haproxy.held("n1")["10.0.0.10"].startswith("inst-b2|")

    # A reload: the new worker read the files; what it holds is read back all the same,
    # and only a difference is pushed (never a `clear map`: the rest stays in use).
    haproxy.sent.clear()
    assert converge(sync, haproxy, moved, ["n1", "n2"])
    for net in ("n1", "n2"):
        assert "show map " + maps.map_path(haproxy.maps, net) in haproxy.sent
    assert not [c for c in haproxy.sent if not c.startswith("show")]
    assert not sync.watching
    assert haproxy.held("n1")["10.0.0.10"].startswith("inst-b2|")

    # A worker that loaded something else (a file changed behind the agent's back).
    path = haproxy.maps / "n1.map"
    path.write_text(path.read_text().replace("inst-b2|", "inst-zz|") + "10.0.0.99 x|y|z\n")
    sync._written.clear()     # what a new agent knows of the files: nothing
    haproxy.sent.clear()
    assert converge(sync, haproxy, moved, ["n1", "n2"])
    pushed = [c for c in haproxy.sent if not c.startswith("show")]
    assert not any(c.startswith("clear") for c in pushed) and pushed
    assert haproxy.held("n1") == maps.desired(moved, None, "s")["n1"]


@needs_haproxy
def test_what_haproxy_holds_is_read_back_and_corrected(haproxy, caplog) -> None:
    sync = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    index = PortIndex.build(PORTS)
    assert converge(sync, haproxy, index, ["n1", "n2"])
    path = maps.map_path(haproxy.maps, "n1")
    # Someone else changes the running haproxy's map behind the agent's back, and the
    # agent's next change of that map finds it out from `show map`.
    stats_command(haproxy.stats, f"add map {path} 10.9.9.9 stale|stale|stale")
    grown = PortIndex.build(PORTS + [vm("c", "n1", "fa:16:3e:00:00:0c", "10.0.0.12")])
    assert not sync.sync(grown, None)                      # not ready while they differ
    assert "differ from the agent's" in caplog.text and sync.due
    assert sync.sync(grown, None)
    assert haproxy.held("n1") == maps.desired(grown, None, "s")["n1"]


@needs_haproxy
def test_only_the_map_owner_deletes_files_and_a_network_back_gets_its_file_again(
        haproxy) -> None:
    sync = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    index = PortIndex.build(PORTS)
    assert converge(sync, haproxy, index, ["n1", "n2"])
    assert converge(sync, haproxy, index, ["n2"])
    assert not (haproxy.maps / "n1.map").exists()
    # n1 comes back with the same entries: its file is written again before haproxy loads
    # a config naming it (haproxy refuses a config naming a missing map).
    assert converge(sync, haproxy, index, ["n1", "n2"])
    assert "10.0.0.10 inst-a|" in (haproxy.maps / "n1.map").read_text()
    assert haproxy.held("n1") == maps.desired(index, None, "s")["n1"]


@needs_haproxy
def test_map_sync_is_not_ready_while_haproxy_is_unreachable_or_refuses(haproxy) -> None:
    sync = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    index = PortIndex.build(PORTS)
    sync.prepare(["n1"])
    sync.served(["n1"], reloaded=True)
    assert not sync.sync(index, None) and not sync.ready    # no haproxy yet
    assert (haproxy.maps / "n1.map").exists()       # the files are current all the same
    assert converge(sync, haproxy, index, ["n1"])

    def refusing(path: str, line: str) -> str:
        return haproxy.command(path, line) if line.startswith("show") else "Out of memory.\n"
    sync._command = refusing
    assert not sync.sync(PortIndex.build(PORTS[1:]), None)
    # Refused once: everything is read back and corrected at the next try.
    sync._command = haproxy.command
    haproxy.sent.clear()
    assert sync.sync(PortIndex.build(PORTS[1:]), None)
    assert "show map " + maps.map_path(haproxy.maps, "n1") in haproxy.sent
    assert haproxy.held("n1") == {}


@needs_haproxy
def test_a_sync_while_haproxy_stops_for_the_last_network_warns_of_nothing(haproxy,
                                                                         caplog) -> None:
    """The reconciler prepares the maps for no network, stops haproxy, then says so: a sync
    from the follower thread in between must not take haproxy's absence for a fault."""
    sync = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    index = PortIndex.build(PORTS)
    assert converge(sync, haproxy, index, ["n1", "n2"])
    sync.prepare([])

    def gone(path: str, line: str) -> str:
        raise FileNotFoundError(2, "No such file or directory", path)
    sync._command = gone            # haproxy stopped, its stats socket with it
    assert not sync.sync(index, None)
    sync.served([], reloaded=False)
    assert not sync.sync(index, None) and not sync.ready
    assert "direct path off" not in caplog.text


@needs_haproxy
def test_maps_are_not_current_before_the_reconciler_says_what_haproxy_serves(
        haproxy) -> None:
    """A restarted agent must not vouch for maps the last agent left in haproxy before its
    first pass says which of them haproxy uses."""
    first = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    index = PortIndex.build(PORTS)
    assert converge(first, haproxy, index, ["n1", "n2"])
    after_restart = maps.MapSync(haproxy.maps, haproxy.stats, "s", haproxy.command)
    assert not after_restart.sync(index, None) and not after_restart.ready
    after_restart.served(["n1", "n2"], reloaded=False)
    haproxy.sent.clear()
    assert after_restart.sync(index, None)
    # It read what the running worker holds, found it current, and pushed nothing.
    assert haproxy.sent and all(c.startswith("show") for c in haproxy.sent)


def test_show_map_is_parsed_with_addresses_as_haproxy_prints_them() -> None:
    answer = "0x55d0 10.0.0.5 i|p|s\n0x55d1 fd00::a i|p|t\n\n"
    assert maps.parse_show_map(answer) == {"10.0.0.5": "i|p|s", "fd00::a": "i|p|t"}
    assert maps.parse_show_map("Unknown map identifier. Please use #<id>.\n") is None
    assert maps.parse_show_map("\n") == {}


def test_nova_watch_logs_refusals_once_and_counts_a_new_worker_from_zero(caplog) -> None:
    state = {"pid": 1, "table": "", "stat": "# pxname,svname,econ,eresp\n"
             "ovnmeta_nova,BACKEND,0,0\n"}

    def cli(path: str, line: str) -> str:
        return {"show info": f"Pid: {state['pid']}\n"}.get(
            line, state["table"] if line.startswith("show table") else state["stat"])
    watch = novawatch.NovaWatch("/stats", cli)
    state["table"] = "0x1: key=403 use=0 exp=0 gpc0=5\n"
    watch.check()                                 # before this agent: a baseline
    assert "403" not in caplog.text
    state["table"] = "0x1: key=403 use=0 exp=0 gpc0=7\n"
    watch.check()
    assert "refused 2 signed request(s)" in caplog.text
    assert "metadata_proxy_shared_secret" in caplog.text
    caplog.clear()
    watch.check()
    assert caplog.text == ""
    state["pid"], state["table"] = 2, "0x1: key=502 use=0 exp=0 gpc0=1\n"
    state["stat"] = "# pxname,svname,stot,econ,eresp\novnmeta_nova,BACKEND,6,0,0\n"
    watch.check()
    assert "nova answered 502 to 1 request(s)" in caplog.text
    assert watch.requests == 6
    # The same failure again within the minute: counted, not logged again.
    caplog.clear()
    state["table"] = "0x1: key=502 use=0 exp=0 gpc0=3\n"
    state["stat"] = "# pxname,svname,stot,econ,eresp\novnmeta_nova,BACKEND,9,0,4\n"
    watch.check()
    assert "failed answer(s)" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "502" in r.message]
    assert watch.errors["5xx"] == 3 and watch.errors["timeout or invalid HTTP"] == 4


def test_map_files_tell_which_secret_signed_them(tmp_path) -> None:
    folder = tmp_path / "maps"
    old = maps.MapSync(folder, "unused.stats", "old", lambda *_: "")
    assert old.files_signed_here()                  # no files: nothing to doubt
    folder.mkdir()
    (folder / "n1.map").write_text("")                 # an empty network says nothing
    (folder / "n2.map").write_text(maps.file_text(
        maps.desired(PortIndex.build(PORTS), None, "old")["n2"]))
    assert old.files_signed_here()
    assert not maps.MapSync(folder, "unused.stats", "new", lambda *_: "").files_signed_here()
