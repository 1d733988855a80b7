"""Helpers started in a cgroup beside the container's: which /proc/self/cgroup allows it, and
the wrapper that moves a helper before it execs (run for real with a file as cgroup.procs)."""

from __future__ import annotations

import os
import subprocess

from ovnmeta.host import outlive, preflight

HOST_CGROUPNS = """\
4:memory:/libpod_parent/libpod-abc
1:cpu:/libpod_parent/libpod-abc
0::/libpod_parent/libpod-abc"""
PRIVATE_CGROUPNS = "4:memory:/\n1:cpu:/\n0::/"


def test_only_a_container_sharing_the_hosts_cgroup_namespace_can_place_helpers_outside():
    hs = outlive.parse_proc_cgroup(HOST_CGROUPNS)
    assert [(h.hid, h.controllers) for h in hs] == [("4", "memory"), ("1", "cpu"), ("0", "")]
    assert outlive.escapable(hs)
    assert not outlive.escapable(outlive.parse_proc_cgroup(PRIVATE_CGROUPNS))


def test_a_private_cgroup_namespace_is_refused_with_the_fix(tmp_path):
    (tmp_path / "cgroup").write_text(PRIVATE_CGROUPNS)
    group, why = outlive.prepare(str(tmp_path / "cgroup"), str(tmp_path / "mnt"))
    assert group is None and "--cgroupns host" in why


def test_the_wrapper_writes_the_helpers_pid_to_every_procs_file_then_execs(tmp_path):
    files = [tmp_path / "a.procs", tmp_path / "b.procs"]
    group = outlive.HelperCgroup(tuple(map(str, files)))
    argv, extra = group.wrap(["sh", "-c", "echo $$"])
    out = subprocess.run(argv, env={**os.environ, **extra}, capture_output=True, text=True)
    pid = out.stdout.strip()   # exec keeps the pid: the helper itself was moved
    assert pid.isdigit() and [f.read_text().strip() for f in files] == [pid, pid]


def test_a_hierarchy_that_refuses_does_not_stop_the_helper(tmp_path):
    group = outlive.HelperCgroup((str(tmp_path / "missing" / "cgroup.procs"),))
    argv, extra = group.wrap(["echo", "started"])
    out = subprocess.run(argv, env={**os.environ, **extra}, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "started\n"


def test_without_a_group_helpers_start_unchanged():
    outlive.use(None)
    assert outlive.helper_argv(["haproxy", "-f", "x"]) == (["haproxy", "-f", "x"], None)


def test_container_detection_ignores_dockerenv(tmp_path):
    (tmp_path / ".dockerenv").write_text("")
    assert not preflight.in_container(tmp_path, env={})
    assert preflight.in_container(tmp_path, env={"OVNMETA_CONTAINER": "1"})
    assert preflight.in_container(tmp_path, env={"container": "podman"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").write_text("")
    assert preflight.in_container(tmp_path, env={})
