"""The host's cache of nova's answers on the agent's socket path (proxy/handler.py with
core/responsecache.py), over real loopback HTTP with the nova double."""

from __future__ import annotations

import asyncio
import json

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from ovnmeta.core.model import NovaEndpoint, PortRecord, SbSnapshot
from ovnmeta.core.responsecache import CachePolicy, ResponseCache
from ovnmeta.proxy import handler
from ovnmeta.proxy.nova import NovaClient
from ovnmeta_testing import novaserver
from ovnmeta_testing.loopback import serving

SECRET = "s3cret"
NET = "net-1"
META = "/openstack/latest/meta_data.json"


def port(name: str, ip: str, inst: str) -> PortRecord:
    ext = {"neutron:device_id": inst, "neutron:project_id": "proj"}
    return PortRecord(name, "", NET, (f"fa:16:3e:00:00:{name} {ip}",),
                      tuple(sorted(ext.items())), True)


BOTH = SbSnapshot("c1", (port("0a", "10.0.0.10", "inst-a"), port("0b", "10.0.0.11", "inst-b")))


def run(scenario, policy: CachePolicy, snapshot=lambda: BOTH):
    async def main():
        nova = novaserver.NovaMetadata(
            {"inst-a": {"project_id": "proj", "hostname": "vm-a", "user_data": "v1"},
             "inst-b": {"project_id": "proj", "hostname": "vm-b"}}, SECRET)
        async with TestServer(novaserver.make_app(nova)) as nova_srv:
            client = NovaClient(NovaEndpoint(hosts=("127.0.0.1",), port=nova_srv.port,
                                             timeout=2))
            cache = ResponseCache(policy)
            proxy = handler.MetadataProxy(snapshot, client, SECRET, cache=cache)
            async with serving(handler.make_server(proxy)) as (host, p), ClientSession() as s:
                async def get(path: str = META, ip: str = "10.0.0.10", method: str = "GET"):
                    async with s.request(method, f"http://{host}:{p}{path}", headers={
                            "X-OVN-Network-ID": NET, "X-Forwarded-For": ip}) as r:
                        return r.status, await r.read(), r.headers
                try:
                    return await scenario(get, nova, cache, nova_srv)
                finally:
                    await client.close()
    return asyncio.run(main())


def test_a_repeated_get_within_the_ttl_does_not_reach_nova() -> None:
    async def scenario(get, nova, cache, _):
        first = await get()
        again = [await get() for _ in range(5)]
        other = await get(ip="10.0.0.11")        # another instance: its own answer
        return first, again, other, nova.requests
    first, again, other, asked = run(scenario, CachePolicy(ttl=60))
    assert first[0] == 200 and "X-OVNMeta-Cache" not in first[2]
    assert all(a[1] == first[1] and a[2]["X-OVNMeta-Cache"] == "hit" for a in again)
    assert json.loads(other[1])["uuid"] == "inst-b"
    assert asked == 2


def test_after_the_ttl_nova_is_asked_again_and_a_change_is_served() -> None:
    async def scenario(get, nova, cache, _):
        before = await get("/openstack/latest/user_data")
        nova.instances["inst-a"]["user_data"] = "v2"
        cached = await get("/openstack/latest/user_data")
        await asyncio.sleep(0.25)
        after = await get("/openstack/latest/user_data")
        return before[1], cached[1], after[1], nova.requests
    assert run(scenario, CachePolicy(ttl=0.2)) == (b"v1", b"v1", b"v2", 2)


def test_when_nova_fails_the_last_good_answer_is_served_marked_stale() -> None:
    async def scenario(get, nova, cache, _):
        good = await get()
        nova.failing = 500
        stale = await get()
        unknown = await get("/openstack/latest/user_data")   # never asked: nova's 500
        nova.failing = 0
        await asyncio.sleep(0.05)
        fresh = await get()
        return good, stale, unknown, fresh, cache.stale_served
    good, stale, unknown, fresh, count = run(scenario, CachePolicy(ttl=0.0, max_stale=60))
    assert stale[0] == 200 and stale[1] == good[1]
    assert stale[2]["X-OVNMeta-Cache"] == "stale" and int(stale[2]["Age"]) >= 0
    assert unknown[0] == 500 and count == 1
    assert fresh[0] == 200 and "X-OVNMeta-Cache" not in fresh[2]


def test_when_nova_is_unreachable_a_known_path_is_stale_and_an_unknown_one_502() -> None:
    async def scenario(get, nova, cache, nova_srv):
        good = await get()
        await nova_srv.close()
        return good, await get(), await get("/openstack/latest/user_data")
    good, stale, unknown = run(scenario, CachePolicy(ttl=0.0, max_stale=60))
    assert stale[0] == 200 and stale[1] == good[1] and stale[2]["X-OVNMeta-Cache"] == "stale"
    assert unknown[0] == 502


def test_posts_and_the_password_are_never_answered_from_the_cache() -> None:
    async def scenario(get, nova, cache, _):
        await get("/openstack/latest/password")
        await get("/openstack/latest/password")
        return nova.requests, len(cache)
    assert run(scenario, CachePolicy(ttl=60)) == (2, 0)


def test_an_instance_whose_port_left_loses_its_answers() -> None:
    views = [BOTH]

    async def scenario(get, nova, cache, _):
        await get()
        await get(ip="10.0.0.11")
        views[0] = SbSnapshot("c1", BOTH.ports[1:])    # inst-a's port went
        gone = await get()
        return gone[0], cache.instance_bytes("inst-a"), cache.instance_bytes("inst-b") > 0
    assert run(scenario, CachePolicy(ttl=60), snapshot=lambda: views[0]) == (404, 0, True)
