"""The proxy and the nova-compatible server over real loopback HTTP (no OVN needed)."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from ovnmeta.proxy import handler
from ovnmeta_testing import novaserver
from ovnmeta.core.model import PortRecord, SbSnapshot
from ovnmeta.core.model import NovaEndpoint
from ovnmeta.proxy.nova import NovaClient
from ovnmeta_testing.loopback import serving

SECRET = "s3cret"
NET = "net-1"
INSTANCES = {
    "inst-a": {"project_id": "proj", "hostname": "vm-a", "user_data": "#cloud-config\na: 1\n",
               "public_keys": {"k": "ssh-ed25519 AAAA a@x"}},
    "inst-b": {"project_id": "proj", "hostname": "vm-b"},
}


def port(name: str, ip: str, inst: str) -> PortRecord:
    ext = {"neutron:device_id": inst, "neutron:project_id": "proj"}
    return PortRecord(name, "", NET, (f"fa:16:3e:00:00:{name} {ip}",),
                      tuple(sorted(ext.items())), True)


SNAP = SbSnapshot("c1", (port("0a", "10.0.0.10", "inst-a"), port("0b", "10.0.0.11", "inst-b")))


def run(scenario, agent_secret: str = SECRET, nova_up: bool = True, hosts_before=()):
    async def main():
        nova = novaserver.NovaMetadata(INSTANCES, SECRET)
        async with TestServer(novaserver.make_app(nova)) as nova_srv:
            port = nova_srv.port
            if not nova_up:
                await nova_srv.close()
            endpoint = NovaEndpoint(hosts=tuple(hosts_before) + ("127.0.0.1",), port=port,
                                    timeout=2)
            client = NovaClient(endpoint)
            server = handler.make_server(handler.MetadataProxy(lambda: SNAP, client, agent_secret))
            async with serving(server) as (host, port), ClientSession() as http:
                try:
                    return await scenario(http, f"http://{host}:{port}", nova)
                finally:
                    await client.close()
    return asyncio.run(main())


def hdrs(ip: str = "10.0.0.10", net: str = NET, **extra: str) -> dict[str, str]:
    return {"X-OVN-Network-ID": net, "X-Forwarded-For": ip, **extra}


async def get(http, base, path, headers, method="GET", data=None):
    async with http.request(method, f"{base}/{path.lstrip('/')}", headers=headers,
                            data=data) as r:
        return r.status, await r.read(), r.headers


def test_each_vm_gets_its_own_metadata() -> None:
    async def scenario(http, base, nova):
        a = await get(http, base, "/openstack/latest/meta_data.json", hdrs())
        b = await get(http, base, "/openstack/latest/meta_data.json", hdrs("10.0.0.11"))
        ud = await get(http, base, "/openstack/latest/user_data", hdrs())
        ec2 = await get(http, base, "/latest/meta-data/public-keys/0/openssh-key", hdrs())
        return a, b, ud, ec2
    a, b, ud, ec2 = run(scenario)
    assert a[0] == 200 and json.loads(a[1])["hostname"] == "vm-a"
    assert b[0] == 200 and json.loads(b[1])["uuid"] == "inst-b"
    assert ud[1] == b"#cloud-config\na: 1\n"
    assert ec2[1] == b"ssh-ed25519 AAAA a@x"


def test_forged_identity_headers_do_not_reach_nova() -> None:
    async def scenario(http, base, nova):
        return await get(http, base, "/openstack/latest/meta_data.json", hdrs(**{
            "X-Instance-ID": "inst-b", "X-Tenant-ID": "proj",
            "X-Instance-ID-Signature": "0" * 64, "X-Metadata-Provider": "p",
            "X-Metadata-Provider-Signature": "x"}))
    status, body, _ = run(scenario)
    assert status == 200 and json.loads(body)["uuid"] == "inst-a"


def test_password_post_passes_through() -> None:
    async def scenario(http, base, nova):
        post = await get(http, base, "/openstack/latest/password", hdrs(), "POST", b"enc-pw")
        again = await get(http, base, "/openstack/latest/password", hdrs())
        return post, again
    post, again = run(scenario)
    assert post[0] == 200 and again[1] == b"enc-pw"


def test_malformed_requests_are_400(caplog) -> None:
    async def scenario(http, base, nova):
        out = []
        for h in ({"X-Forwarded-For": "10.0.0.10"}, {"X-OVN-Network-ID": NET},
                  hdrs("10.0.0.999"), hdrs("10.0.0.10, 10.0.0.11")):
            out.append((await get(http, base, "/", h))[0])
        both = [("X-OVN-Network-ID", NET), ("X-OVN-Network-ID", "other"),
                ("X-Forwarded-For", "10.0.0.10")]
        async with http.get(f"{base}", headers=both) as r:
            out.append(r.status)
        async with http.get(f"{base}", headers={**hdrs(), "X-Big": "x" * 20000}) as r:
            out.append(r.status)
        return out
    assert run(scenario) == [400, 400, 400, 400, 400, 400]


def test_unknown_vm_is_404_with_one_log_line(caplog) -> None:
    async def scenario(http, base, nova):
        return await get(http, base, "/", hdrs("10.0.0.99"))
    with caplog.at_level(logging.INFO, logger="ovnmeta.proxy.handler"):
        status, body, _ = run(scenario)
    assert status == 404 and b"10.0.0.99" in body
    lines = [r for r in caplog.records if r.name == "ovnmeta.proxy.handler"]
    assert len(lines) == 1 and "10.0.0.99" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_wrong_secret_is_403_and_names_the_option(caplog) -> None:
    async def scenario(http, base, nova):
        return await get(http, base, "/openstack/latest/meta_data.json", hdrs())
    with caplog.at_level(logging.ERROR):
        status, _, _ = run(scenario, agent_secret="wrong")
    assert status == 403
    assert any("metadata_proxy_shared_secret" in r.getMessage() for r in caplog.records)
    assert not any("wrong" in r.getMessage() or SECRET in r.getMessage()
                   for r in caplog.records)


def test_nova_down_is_502() -> None:
    async def scenario(http, base, nova):
        return await get(http, base, "/openstack/latest/meta_data.json", hdrs())
    status, body, _ = run(scenario, nova_up=False)
    assert status == 502 and b"nova" in body


def test_failover_to_the_next_nova_host() -> None:
    async def scenario(http, base, nova):
        return await get(http, base, "/openstack/latest/meta_data.json", hdrs())
    # 127.0.0.2 refuses connections on nova's port: the proxy moves on to 127.0.0.1.
    status, body, _ = run(scenario, hosts_before=("127.0.0.2",))
    assert status == 200 and json.loads(body)["hostname"] == "vm-a"


def test_nova_server_rejects_unsigned_and_missing_headers() -> None:
    async def main():
        nova = novaserver.NovaMetadata(INSTANCES, SECRET)
        async with TestServer(novaserver.make_app(nova)) as srv, ClientSession() as http:
            url = srv.make_url("/openstack/latest/meta_data.json")
            async with http.get(url) as r1:
                pass
            async with http.get(url, headers={"X-Instance-ID": "inst-a", "X-Tenant-ID": "proj",
                                              "X-Instance-ID-Signature": "bad"}) as r2:
                pass
            async with http.get(srv.make_url("/openstack")) as r3:
                listing = await r3.text()
            return r1.status, r2.status, listing
    s1, s2, listing = asyncio.run(main())
    assert (s1, s2) == (400, 403)
    assert "latest" in listing.split("\n")


def test_failure_kinds_and_throttled_logging(caplog) -> None:
    import errno

    from ovnmeta.core.throttle import Throttle
    from ovnmeta.proxy.nova import InvalidHttp, failure_kind
    assert failure_kind(ConnectionResetError()) == "reset"
    assert failure_kind(OSError(errno.ECONNRESET, "reset")) == "reset"
    assert failure_kind(ConnectionRefusedError()) == "refused"
    assert failure_kind(InvalidHttp("x")) == "invalid HTTP"
    log = logging.getLogger("throttle-test")
    throttle = Throttle(interval=60)
    with caplog.at_level(logging.WARNING, logger="throttle-test"):
        for _ in range(5):
            throttle.log(log, logging.WARNING, "k", "nova down")
        throttle.log(log, logging.WARNING, "other", "another failure")
    assert [r.getMessage() for r in caplog.records] == ["nova down", "another failure"]


def test_requests_from_an_address_with_no_port_log_once_a_minute_per_address(caplog):
    """LP #2112130: a VM using an address with no port asks again and again; its 404s are
    logged once per address and interval, not once per request, and never as ERROR."""
    import asyncio
    import logging as _logging
    from ovnmeta.core.model import SbSnapshot
    from ovnmeta.proxy.handler import MetadataProxy
    from ovnmeta.proxy.httpserver import Request
    proxy = MetadataProxy(lambda: SbSnapshot(chassis="c", ports=()), nova=None, secret="s")

    def ask(ip: str) -> int:
        request = Request(method="GET", path_qs="/", headers=[
            ("X-OVN-Network-ID", "net-1"), ("X-Forwarded-For", ip)], body=b"")
        return asyncio.run(proxy.handle(request)).status

    with caplog.at_level(_logging.DEBUG, logger="ovnmeta.proxy.handler"):
        assert {ask("10.0.0.99") for _ in range(50)} | {ask("10.0.0.98")} == {404}
    lines = [r for r in caplog.records if r.levelno >= _logging.INFO
             and "no VM port bound here" in r.getMessage()]
    assert [r.getMessage().split(" on ")[0] for r in lines] == [
        "no VM port bound here with IP 10.0.0.99", "no VM port bound here with IP 10.0.0.98"]
    assert not [r for r in caplog.records if r.levelno >= _logging.ERROR]


def test_the_throttle_stays_bounded_under_addresses_a_client_chooses():
    import logging as _logging
    from ovnmeta.core.throttle import Throttle
    t = Throttle(interval=60.0, max_keys=100)
    for i in range(1000):
        t.log(_logging.getLogger("x"), _logging.DEBUG, f"net 10.0.{i // 250}.{i % 250}", "m")
    assert len(t._last) <= 100
