"""Runs a real `ovnmeta-agent` process against the sandbox, as tests and benchmarks need."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ovnmeta.haproxy.runtime import parse_frontend_stats, stats_command
from ovnmeta.haproxy.settings import shared_stats_socket
from ovnmeta.host import procs
from ovnmeta_testing.sandbox import Sandbox, alive, wait_until  # noqa: F401 (re-exported)

STARTING = "ovnmeta-agent starting"    # the agent's first line, and its line once serving
SERVING = "serving metadata"


def write_config(box: Sandbox, state_dir: Path, mode: str = "shared", extra: str = "") -> Path:
    path = state_dir / "agent.ini"
    path.write_text(
        "[DEFAULT]\n"
        f"state_path = {state_dir}\n"
        "debug = true\n"
        f"{extra}\n"
        "[ovn]\n"
        f"{box.agent_ovn_options()}"
        "[ovs]\n"
        f"ovsdb_connection = {box.ovs_connection}\n"
        "[haproxy]\n"
        f"mode = {mode}\n"
        # Off unless a test turns it on: agents of concurrent runs would share the port.
        "[metrics]\n"
        "listen =\n"
        # Off unless a test turns it on: most tests measure what nova itself answers
        # (its faults, its fairness, the direct path to it). The cache's own tests, the
        # container's and the package's run with it on, the default.
        + ("" if "[metadata_cache]" in extra else "[metadata_cache]\nenabled = false\n"))
    return path


class AgentProcess:
    """One agent process; `stop()` ends it, `cleanup()` also removes what it built."""

    # Every agent started and not yet stopped: one a test forgot would hold the host lock
    # and fail every later test, so the test suite ends and reports these (`leftovers`).
    started: "set[AgentProcess]" = set()

    def __init__(self, box: Sandbox, mode: str = "shared", state_dir: Path | None = None,
                 extra: str = "") -> None:
        # Short paths: haproxy's sockets live here and AF_UNIX paths stop at 107 bytes.
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="omt-", dir="/tmp"))
        self.config = write_config(box, self.state_dir, mode, extra)
        self.log_path = self.state_dir / "agent.log"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}   # added to the agent's environment

    @property
    def socket(self) -> str:
        return str(self.state_dir / "metadata_proxy")

    def start(self) -> "AgentProcess":
        exe = Path(sys.executable).parent / "ovnmeta-agent"
        log = open(self.log_path, "a")
        # oslo.log writes to stdout when no log_file is set.
        self.proc = subprocess.Popen([str(exe), "--config-file", str(self.config)],
                                     stdout=log, stderr=log, env={**os.environ, **self.env})
        AgentProcess.started.add(self)
        return self

    @classmethod
    def leftovers(cls) -> "list[AgentProcess]":
        """Agents still running that no one stopped."""
        cls.started = {agent for agent in cls.started if agent.running()}
        return sorted(cls.started, key=lambda agent: agent.proc.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, timeout: float = 30) -> float:
        """Stop the agent, start it again and wait until the new process serves the
        socket; the seconds that took. (The log holds both processes' lines: only the new
        one's "serving metadata" counts.)"""
        starts = self.log().count(STARTING)
        began = time.monotonic()
        self.stop()
        self.start()

        def serving() -> bool:
            segments = self.log().split(STARTING)
            return len(segments) > starts + 1 and SERVING in segments[-1]
        wait_until(serving, timeout=timeout, what="restarted agent serving")
        return time.monotonic() - began

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        exe = Path(sys.executable).parent / "ovnmeta"
        proc = subprocess.run([str(exe), "--config-file", str(self.config), "cleanup"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ovnmeta cleanup failed: {proc.stderr}")
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def haproxy_pids(self) -> list[int]:
        pids = []
        for pidfile in sorted((self.state_dir / "haproxy").glob("*.pid")):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (ValueError, IndexError, FileNotFoundError):  # stopped while listed
                continue
            if alive(pid):
                pids.append(pid)
        return pids

    def haproxy_cache_hits(self) -> int:
        """GETs the shared haproxy answered from its cache, over all networks."""
        csv = stats_command(shared_stats_socket(self.state_dir / "haproxy"),
                            "show stat -1 1 -1")
        return sum(v.get("cache_hits", 0) for v in parse_frontend_stats(csv).values())


def namespaces() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def ini_lines(options: list[str]) -> str:
    """Command-line KEY=VALUE options (a script's --haproxy-option) as ini lines."""
    return "".join(f"{o.replace('=', ' = ', 1)}\n" for o in options)


def agent_processes(agent: "AgentProcess") -> list[int]:
    """The agent and every process under it (socket keeper, worker zygote, workers) except
    haproxy: haproxy's masters are the agent's children too (it is their subreaper), and
    are counted apart."""
    found, todo = [], [agent.proc.pid]
    while todo:
        pid = todo.pop()
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if pid != agent.proc.pid and name.startswith(("haproxy", "hap")):
            continue
        found.append(pid)
        todo += procs.children(pid)
    return found
