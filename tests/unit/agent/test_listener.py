"""The metadata socket (agent/listener.py): neutron's mode semantics, a stale socket replaced,
and which peers may connect."""

from __future__ import annotations

import os
import stat

from ovnmeta.agent import listener


def test_socket_mode_follows_neutron_semantics() -> None:
    assert listener.socket_mode("user", "", "") == 0o644
    assert listener.socket_mode("group", "", "") == 0o664
    assert listener.socket_mode("all", "", "") == 0o666
    assert listener.socket_mode("deduce", "nova", "nova") == 0o664
    assert listener.socket_mode("deduce", "nova", "") == 0o644
    assert listener.socket_mode("deduce", "", "") == 0o666


def test_bind_socket_sets_mode_and_replaces_a_stale_one(tmp_path) -> None:
    path = str(tmp_path / "sub" / "metadata_proxy")
    first = listener.bind_socket(path, 0o644)
    first.close()  # a crashed agent leaves its socket file behind
    sock = listener.bind_socket(path, 0o664)
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o664
        assert not [p for p in os.listdir(tmp_path / "sub") if p != "metadata_proxy"]
    finally:
        sock.close()


def test_peer_policy_admits_root_the_agent_and_haproxys_user_and_group() -> None:
    import pwd

    from ovnmeta.proxy.peers import Peer, PeerPolicy
    nobody = pwd.getpwnam("nobody")
    policy = PeerPolicy.for_haproxy()
    assert policy.allows(Peer(1, 0, 0)) and policy.allows(Peer(1, os.geteuid(), 12345))
    assert not policy.allows(Peer(1, nobody.pw_uid, nobody.pw_gid))
    assert PeerPolicy.for_haproxy(user="nobody").allows(Peer(1, nobody.pw_uid, 1))
    assert PeerPolicy.for_haproxy(group=str(nobody.pw_gid)).allows(
        Peer(1, 4242, nobody.pw_gid))
