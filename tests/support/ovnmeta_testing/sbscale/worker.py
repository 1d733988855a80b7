"""A process hosting several agents of one kind, driven over stdin and stdout by
driver.Workers. It imports only the standard library at the top, since neutron's virtualenv
runs it too (by its file path: ovnmeta_testing is not installed there); each kind's code is
imported once the kind is known.

    python worker.py SPEC.json
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

SB_CFG_SUFFIX = "-sb-cfg"


def _mem() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kib"] = int(line.split()[1])
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["pss_kib"] = int(line.split()[1])
    return out


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


class _OvnmetaAgent:
    def __init__(self, chassis: str, remote: str, plugged: list[str]) -> None:
        from ovnmeta.ovsdb.sbview import SbView
        self.view = SbView(remote, chassis, lambda dirty: None, bridge="br-int")
        self.view.watch_plugged(frozenset(plugged))

    def start(self) -> None:
        self.view.start()

    @property
    def idl(self):
        return self.view._idl

    def loaded(self) -> bool:
        return self.view.settled and _monitoring(self.idl) and _conditions_settled(self.idl)

    def rows(self) -> dict:
        return self.view.monitored_rows


class _NeutronAgent:
    def __init__(self, chassis: str, remote: str, plugged: list[str]) -> None:
        self.chassis, self.remote = chassis, remote
        self.sb_idl = None
        self._idl = None

    def start(self) -> None:
        from neutron.agent.ovn.metadata import agent as meta_agent
        from neutron.agent.ovn.metadata import ovsdb as meta_ovsdb
        # As the metadata agent's start() does, with only the event that writes liveness:
        # the port events would provision namespaces (they match the rows the IDL holds
        # either way).
        tables = ('Encap', 'Port_Binding', 'Datapath_Binding', 'SB_Global', 'Chassis',
                  'Chassis_Private')
        events = (meta_agent.SbGlobalUpdateEvent(self),)
        idl = meta_ovsdb.MetadataAgentOvnSbIdl(chassis=self.chassis, tables=tables,
                                               events=events)
        self._idl = idl
        self.sb_idl = idl.start()

    @property
    def idl(self):
        return self._idl

    def loaded(self) -> bool:
        return self.sb_idl is not None and _monitoring(self._idl)

    def rows(self) -> dict:
        return {t: len(self._idl.tables[t].rows) for t in self._idl.tables}


def _monitoring(idl) -> bool:
    return idl is not None and idl._session.is_connected() and \
        idl.state == idl.IDL_S_MONITORING


def _conditions_settled(idl) -> bool:
    return not any(t._condition_state.new is not None or t._condition_state.requested
                   is not None for t in idl.tables.values())


def _setup_neutron(remote: str) -> None:
    from oslo_config import cfg
    from neutron.conf.agent.database import agents_db
    from neutron.conf.plugins.ml2.drivers.ovn import ovn_conf
    ovn_conf.register_opts()
    agents_db.register_db_agents_opts()   # agent_down_time: SbGlobalUpdateEvent's jitter
    cfg.CONF([], project="neutron")
    # Everything an agent's start() imports, before the memory baseline is read.
    from neutron.agent.ovn.metadata import agent, ovsdb  # noqa: F401
    from neutron.plugins.ml2.drivers.ovn.mech_driver.ovsdb import impl_idl_ovn  # noqa: F401
    cfg.CONF.set_override("ovn_sb_connection", remote, "ovn")


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    kind = spec["kind"]
    if kind == "neutron":
        _setup_neutron(spec["agents"][0]["remote"])
        import logging
        logging.basicConfig(level=logging.WARNING)
        cls = _NeutronAgent
        # Each agent connects to its own remote; neutron reads the option at construction.
        from oslo_config import cfg
    else:
        import logging
        logging.basicConfig(level=logging.WARNING)
        import ovnmeta.ovsdb.sbview  # noqa: F401  (imported before the baseline is read)
        cls = _OvnmetaAgent
    agents = []
    for a in spec["agents"]:
        if kind == "neutron":
            cfg.CONF.set_override("ovn_sb_connection", a["remote"], "ovn")
        agents.append(cls(a["chassis"], a["remote"], a["plugged"]))
    base = _mem()
    import ovs.json
    _say(event="ready", json_parser=ovs.json.PARSER, **base)
    sys.stdin.readline()   # go
    done: dict[int, float] = {}

    retries = [0]

    def run(i: int, agent) -> None:
        # As the agents do: ovnmeta-agent retries its SB connection every 2 s, neutron's
        # start() is wrapped in its own retry. A busy SB can miss a schema request.
        while True:
            try:
                agent.start()
                return
            except Exception as exc:
                retries[0] += 1
                print(f"agent {i}: {exc}; retrying in 2 s", file=sys.stderr)
                time.sleep(2)
                if kind == "ovnmeta":
                    agents[i] = agent = cls(spec["agents"][i]["chassis"],
                                            spec["agents"][i]["remote"],
                                            spec["agents"][i]["plugged"])

    threads = [threading.Thread(target=run, args=(i, a), daemon=True)
               for i, a in enumerate(agents)]
    for t in threads:
        t.start()
    while len(done) < len(agents):
        for i, a in enumerate(agents):
            if i not in done and a.idl is not None and a.loaded():
                done[i] = time.time()
        time.sleep(0.01)
    mem = _mem()
    _say(event="loaded", last=max(done.values()), rows=agents[0].rows(), retries=retries[0],
         rss_kib=mem["rss_kib"], pss_kib=mem["pss_kib"],
         per_agent_rss_kib=(mem["rss_kib"] - base["rss_kib"]) / len(agents),
         per_agent_pss_kib=(mem["pss_kib"] - base["pss_kib"]) / len(agents))
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "reconnect":
            gone: dict[int, bool] = {}
            back: dict[int, float] = {}
            deadline = time.time() + 300
            while len(back) < len(agents) and time.time() < deadline:
                for i, a in enumerate(agents):
                    if i in back:
                        continue
                    if not _monitoring(a.idl):
                        gone[i] = True
                    elif gone.get(i) and a.loaded():
                        back[i] = time.time()
                time.sleep(0.01)
            _say(event="reconnected", last=max(back.values()) if back else None,
                 back=len(back), of=len(agents))
        elif cmd == "quit":
            break
    for a in agents:
        try:
            if kind == "ovnmeta":
                a.view.stop()
            else:
                a.sb_idl.ovsdb_connection.stop(timeout=5)
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1]))
