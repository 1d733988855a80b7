"""The direct path's pure parts (maps, commands, parsing) and MapSync against a fake CLI."""

import ipaddress
import stat

from ovnmeta.haproxy import maps as directpath
from ovnmeta.core.model import PortRecord
from ovnmeta.core.portindex import PortIndex, mac_from_link_local
from ovnmeta.core.signing import sign_instance_id


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
    maps = directpath.desired(index, None, "s3cret")
    assert set(maps) == {"n1", "n2"}
    assert maps["n1"]["10.0.0.10"] == f"inst-a|proj|{sign_instance_id('s3cret', 'inst-a')}"
    assert maps["n2"]["10.0.0.10"].startswith("inst-b|")
    # Every key is answered the same way by the index: the EUI-64 link-local included.
    for net, entries in maps.items():
        for address in entries:
            assert index.lookup(net, address).instance_id == entries[address].split("|")[0]
    link = [a for a in maps["n1"] if a.startswith("fe80::")]
    assert link and mac_from_link_local(ipaddress.ip_address(link[0])) == "fa:16:3e:00:00:0a"


def test_unplugged_ports_and_unsafe_ids_are_left_to_the_agent() -> None:
    ports = PORTS + [vm("c", "n1", "fa:16:3e:00:00:0c", "10.0.0.12", device="x y\r\nX-Evil: 1"),
                     vm("d", "n1", "fa:16:3e:00:00:0d", "10.0.0.13", project="p;show info")]
    maps = directpath.desired(PortIndex.build(ports), {"a", "c", "d"}, "s")
    assert "n2" not in maps                      # b is not plugged here
    assert "10.0.0.12" not in maps["n1"] and "10.0.0.13" not in maps["n1"]
    assert "10.0.0.10" in maps["n1"]


def test_external_ports_need_no_interface_here() -> None:
    """A baremetal/SR-IOV port's binding is the authority: no OVS interface carries it."""
    import dataclasses
    bm = dataclasses.replace(vm("bm", "n3", "fa:16:3e:00:00:0e", "10.0.0.14"), type="external")
    index = PortIndex.build(PORTS + [bm])
    maps = directpath.desired(index, set(), "s")
    assert set(maps) == {"n3"} and maps["n3"]["10.0.0.14"].startswith("inst-bm|")
    assert index.lookup("n3", "10.0.0.14").answerable(set())
    assert not index.lookup("n1", "10.0.0.10").answerable(set())


def test_changes_remove_before_they_add() -> None:
    cmds = directpath.changes("/m", {"1.1.1.1": "a", "2.2.2.2": "b"},
                              {"2.2.2.2": "c", "3.3.3.3": "d"})
    assert cmds == ["del map /m 1.1.1.1", "set map /m 2.2.2.2 c", "add map /m 3.3.3.3 d"]
    assert directpath.changes("/m", {"1.1.1.1": "a"}, {"1.1.1.1": "a"}) == []
    assert directpath.replacement("/m", {"1.1.1.1": "a"}) == ["clear map /m",
                                                              "add map /m 1.1.1.1 a"]


def test_batches_keep_order_and_size() -> None:
    cmds = [f"add map /m 10.0.{i // 256}.{i % 256} v" for i in range(2000)]
    out = directpath.batches(cmds, limit=1000)
    assert all(len(b) <= 1000 for b in out)
    assert ";".join(out).split(";") == cmds


def test_parsers() -> None:
    assert directpath.worker_pid("Name: HAProxy\nPid: 4242\nUptime: 1\n") == 4242
    assert directpath.worker_pid("garbage") is None
    table = ("# table: ovnmeta_nova_answers, type: integer, size:64, used:2\n"
             "0x1: key=403 use=0 exp=0 gpc0=2\n0x2: key=500 use=0 exp=0 gpc0=1\n")
    assert directpath.parse_answers(table) == {403: 2, 500: 1}
    csv = ("# pxname,svname,stot,econ,eresp,status\nx,BACKEND,9,9,9,UP\n"
           "ovnmeta_nova,nova0,1,1,1,UP\novnmeta_nova,BACKEND,8,3,4,UP\n")
    assert directpath.parse_backend_errors(csv) == {"econ": 3, "eresp": 4, "stot": 8}


class FakeCli:
    """haproxy's stats socket: one worker pid, maps by file, and the commands seen."""

    def __init__(self) -> None:
        self.pid = 100
        self.maps: dict[str, dict[str, str]] = {}
        self.sent: list[str] = []
        self.down = False

    def __call__(self, path: str, line: str) -> str:
        if self.down:
            raise ConnectionRefusedError(111, "refused")
        out = []
        for cmd in line.split(";"):
            self.sent.append(cmd)
            words = cmd.split(" ")
            if cmd == "show info":
                out.append(f"Pid: {self.pid}\n")
            elif words[:2] == ["clear", "map"]:
                self.maps[words[2]] = {}
            elif words[:2] in (["add", "map"], ["set", "map"]):
                self.maps.setdefault(words[2], {})[words[3]] = words[4]
            elif words[:2] == ["del", "map"]:
                if self.maps.get(words[2], {}).pop(words[3], None) is None:
                    out.append("Key not found.\n")
            out.append("\n")
        return "".join(out)


def test_map_sync_writes_files_then_pushes_and_follows_a_new_worker(tmp_path) -> None:
    cli = FakeCli()
    sync = directpath.MapSync(tmp_path / "maps", "/stats", "s", cli)
    index = PortIndex.build(PORTS)
    assert sync.sync(index, None, {"n1", "n2"})
    path1 = directpath.map_path(tmp_path / "maps", "n1")
    assert cli.maps[path1] == directpath.desired(index, None, "s")["n1"]
    text = (tmp_path / "maps" / "n1.map").read_text()
    assert "10.0.0.10 inst-a|proj|" in text
    assert stat.S_IMODE((tmp_path / "maps" / "n1.map").stat().st_mode) == 0o600

    # A then gone, B with its address: removals go before additions, only the difference.
    cli.sent.clear()
    moved = PortIndex.build([vm("b2", "n1", "fa:16:3e:00:00:0e", "10.0.0.10"), PORTS[1]])
    assert sync.sync(moved, None, {"n1", "n2"})
    pushed = [c for c in cli.sent if c != "show info"]
    assert not any(c.startswith("clear") for c in pushed)
    assert pushed.index(next(c for c in pushed if c.startswith("del"))) < \
        pushed.index(next(c for c in pushed if c.startswith("add")))
    assert cli.maps[path1]["10.0.0.10"].startswith("inst-b2|")

    # A reload: the new worker read the files, and gets every map again all the same.
    sync.expect_reload()
    cli.pid, cli.maps = 101, {path1: {"10.0.0.10": "stale|stale|stale"}}
    cli.sent.clear()
    assert sync.sync(moved, None, {"n1", "n2"})
    assert "clear map " + path1 in cli.sent and not sync.watching
    assert cli.maps[path1]["10.0.0.10"].startswith("inst-b2|")


def test_map_sync_is_not_ready_while_haproxy_is_unreachable_or_refuses(tmp_path) -> None:
    cli = FakeCli()
    sync = directpath.MapSync(tmp_path, "/stats", "s", cli)
    index = PortIndex.build(PORTS)
    cli.down = True
    assert not sync.sync(index, None, {"n1"}) and not sync.ready
    assert (tmp_path / "n1.map").exists()       # the files are current all the same
    cli.down = False
    assert sync.sync(index, None, {"n1"})

    def refusing(path: str, line: str) -> str:
        return cli(path, line) if line == "show info" else "Out of memory.\n"
    sync._command = refusing
    assert not sync.sync(PortIndex.build(PORTS[1:]), None, {"n1"})
    # Refused once: everything is pushed again at the next try.
    sync._command = cli
    cli.sent.clear()
    assert sync.sync(PortIndex.build(PORTS[1:]), None, {"n1"})
    assert any(c.startswith("clear map") for c in cli.sent)


def test_nova_watch_logs_refusals_once_and_counts_a_new_worker_from_zero(caplog) -> None:
    state = {"pid": 1, "table": "", "stat": "# pxname,svname,econ,eresp\n"
             "ovnmeta_nova,BACKEND,0,0\n"}

    def cli(path: str, line: str) -> str:
        return {"show info": f"Pid: {state['pid']}\n"}.get(
            line, state["table"] if line.startswith("show table") else state["stat"])
    watch = directpath.NovaWatch("/stats", cli)
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
