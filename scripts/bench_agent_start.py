"""How soon a starting ovnmeta-agent holds the metadata socket path (idle host; no OVN needed).

    .venv/bin/python scripts/bench_agent_start.py [--starts 5] [--late]

A listening unix socket stands in for neutron's agent's at the path. The agent is started
with a config whose SB is unreachable, and the time from its exec to the path naming
another socket (its rename over the stand-in's) is printed. `--late` adds an empty
`--config-dir`, which ovnmeta.agent.earlysocket leaves to oslo.config: the socket is then
bound after the full config loaded, as before that module. Each start's agent and socket
keeper are stopped before the next.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ovnmeta.agent import handoff

AGENT = Path(sys.executable).parent / "ovnmeta-agent"


def one_start(work: Path, late: bool) -> float:
    path = work / "metadata_proxy"
    standin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    standin.bind(str(path))
    standin.listen(5)
    inode = path.stat().st_ino
    argv = [str(AGENT), "--config-file", str(work / "agent.ini")]
    if late:
        argv += ["--config-dir", str(work / "empty")]
    start = time.monotonic()
    agent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while path.stat().st_ino == inode:
            if agent.poll() is not None:
                raise SystemExit(f"ovnmeta-agent exited {agent.returncode} before binding; "
                                 f"see {work}/agent.log")
            time.sleep(0.001)
        took = time.monotonic() - start
        # The agent starts its socket keeper right after: let it, then stop both, or the
        # next start would collect the keeper's socket instead of binding one.
        deadline = time.monotonic() + 10
        while not handoff.alive(str(path)) and time.monotonic() < deadline:
            time.sleep(0.01)
        return took
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        while handoff.release(str(path)):   # the keeper holds it for a next agent: not here
            time.sleep(0.05)
        standin.close()
        path.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--late", action="store_true",
                        help="bind after the full config (an empty --config-dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omt-start-", dir="/tmp"))
    (work / "empty").mkdir()
    (work / "agent.ini").write_text(
        f"[DEFAULT]\nstate_path = {work}\nlock_path = {work}/lock\n"
        f"log_file = {work}/agent.log\n"
        "[ovn]\novn_sb_connection = tcp:127.0.0.1:1\n"
        "[ovs]\novsdb_connection = tcp:127.0.0.1:1\n")
    times = []
    for _ in range(args.starts):
        times.append(one_start(work, args.late))
        time.sleep(0.3)
    ms = [round(t * 1000, 1) for t in times]
    print(f"{'late (after the full config)' if args.late else 'early'}: exec to socket at "
          f"the path, {args.starts} starts: median {statistics.median(ms)} ms, "
          f"min {min(ms)}, max {max(ms)} ({', '.join(map(str, ms))})")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
