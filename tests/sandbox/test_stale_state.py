"""What an earlier run, a crash or a hand left on the host never crashes or misleads the
agent: a pidfile whose PID is now another process, garbage in the state directory, a
namespace name that is not a namespace."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ovnmeta.core import naming
from ovnmeta_testing.agentproc import alive
from ovnmeta_testing.echo import wait_served


def test_a_pidfile_naming_another_process_is_never_signalled(make_network, make_vm,
                                                              start_agent, echo) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        agent = start_agent(run=False, extra=f"nova_metadata_port = {echo.port}")
        haproxy_dir = agent.state_dir / "haproxy"
        haproxy_dir.mkdir(parents=True, exist_ok=True)
        (haproxy_dir / "shared.pid").write_text(f"{bystander.pid}\n")
        (haproxy_dir / "shared.cfg").write_text("# an old config\n")
        vm = make_vm(make_network())
        agent.start()
        wait_served(vm, timeout=30)
        assert bystander.poll() is None and alive(bystander.pid)
        agent.stop()
        subprocess.run([str(Path(os.sys.executable).parent / "ovnmeta"), "--config-file",
                        str(agent.config), "cleanup"], check=True, capture_output=True)
        assert bystander.poll() is None  # not even by cleanup
    finally:
        bystander.kill()
        bystander.wait()


def test_garbage_in_the_state_directory_is_ignored(make_network, make_vm, start_agent,
                                                   echo) -> None:
    agent = start_agent(run=False, extra=f"nova_metadata_port = {echo.port}")
    garbage = {
        "haproxy/shared.pid": b"\x00\xffnot a pid",
        "haproxy/ovnmeta-not-a-network.pid": b"12 34",
        "metadata_proxy.handoff": b"a regular file where a socket should be",
        "metadata_proxy": b"a regular file where the socket goes",
        "ovn-metadata-proxy/whatever.conf": b"garbage",
        "external/pids/whatever.pid.haproxy": b"-1",
        "control.sock": b"\x00" * 10,
    }
    for name, data in garbage.items():
        path = agent.state_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    vm = make_vm(make_network())
    agent.start()
    wait_served(vm, timeout=30)
    assert agent.running() and "Traceback" not in agent.log()


def test_a_namespace_name_that_is_not_a_namespace_is_replaced(make_network, make_vm,
                                                              start_agent, echo) -> None:
    net = make_network()
    bogus = Path("/run/netns") / naming.namespace(net.id)
    bogus.parent.mkdir(parents=True, exist_ok=True)
    bogus.write_text("not a namespace")   # as left by a crash between create and mount
    vm = make_vm(net)
    agent = start_agent(extra=f"nova_metadata_port = {echo.port}")
    wait_served(vm, timeout=30)
    assert agent.running() and "Traceback" not in agent.log()
    assert "is not a network namespace" in agent.log()
    out = subprocess.run(["ip", "-n", naming.namespace(net.id), "-o", "link"],
                         capture_output=True, text=True)
    assert naming.inner_device(net.id) in out.stdout
