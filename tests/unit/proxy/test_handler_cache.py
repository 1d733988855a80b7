"""The host's cache of nova's answers on the agent's socket path (proxy/handler.py with
core/responsecache.py), over real loopback HTTP with the nova double."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from ovnmeta.core.breaker import Breaker
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


def run(scenario, policy: CachePolicy, snapshot=lambda: BOTH, timeout: float = 2,
        cooldown: float = 2.0, stale_after: float = 5.0):
    async def main():
        nova = novaserver.NovaMetadata(
            {"inst-a": {"project_id": "proj", "hostname": "vm-a", "user_data": "v1"},
             "inst-b": {"project_id": "proj", "hostname": "vm-b"}}, SECRET)
        async with TestServer(novaserver.make_app(nova)) as nova_srv:
            client = NovaClient(NovaEndpoint(hosts=("127.0.0.1",), port=nova_srv.port,
                                             timeout=timeout))
            cache = ResponseCache(policy)
            proxy = handler.MetadataProxy(snapshot, client, SECRET, cache=cache,
                                          stale_after=stale_after)
            proxy.breaker = Breaker(cooldown=cooldown)
            async with serving(handler.make_server(proxy)) as (host, p), ClientSession() as s:
                async def get(path: str = META, ip: str = "10.0.0.10", method: str = "GET",
                              host_header: str | None = None):
                    headers = {"X-OVN-Network-ID": NET, "X-Forwarded-For": ip}
                    if host_header:
                        headers["Host"] = host_header
                    async with s.request(method, f"http://{host}:{p}{path}",
                                         headers=headers) as r:
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


def test_when_nova_is_unreachable_a_known_path_is_stale_and_an_unknown_one_503() -> None:
    async def scenario(get, nova, cache, nova_srv):
        good = await get()
        await nova_srv.close()
        return good, await get(), await get("/openstack/latest/user_data")
    good, stale, unknown = run(scenario, CachePolicy(ttl=0.0, max_stale=60))
    assert stale[0] == 200 and stale[1] == good[1] and stale[2]["X-OVNMeta-Cache"] == "stale"
    assert stale[2]["Cache-Control"] == "no-store"
    # The refusal opened the breaker: nothing kept, so 503 at once, with when to retry.
    assert unknown[0] == 503 and unknown[2]["Retry-After"] == "2"


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


def test_haproxys_cache_is_told_how_long_it_may_keep_an_answer_and_only_for_its_instance(
        ) -> None:
    """Host carries the instance haproxy's map names: the answer says max-age (what is left
    of the TTL), unless the agent found another instance, or the answer may not be kept."""
    async def scenario(get, nova, cache, _):
        fresh = await get(host_header="inst-a")
        hit = await get(host_header="inst-a")
        other = await get(ip="10.0.0.11", host_header="inst-a")   # the map lags the agent
        plain = await get(ip="10.0.0.11")                          # not haproxy's cache
        password = await get("/openstack/latest/password", host_header="inst-a")
        return fresh[2], hit[2], other[2], plain[2], password[2]
    fresh, hit, other, plain, password = run(scenario, CachePolicy(ttl=30))
    assert fresh["Cache-Control"] == "max-age=30" and "Age" not in fresh
    assert hit["X-OVNMeta-Cache"] == "hit" and hit["Cache-Control"] in ("max-age=30",
                                                                        "max-age=29")
    assert other["Cache-Control"] == "no-store"
    assert plain["Cache-Control"] == "no-store"   # what a VM sees past the agent
    assert password["Cache-Control"] == "no-store"


def test_a_slow_nova_gets_the_kept_answer_served_and_its_late_answer_kept() -> None:
    async def scenario(get, nova, cache, _):
        await get("/openstack/latest/user_data")
        await asyncio.sleep(0.15)                          # past the TTL
        nova.instances["inst-a"].update(delay=0.6, user_data="v2")
        started = asyncio.get_running_loop().time()
        slow = await get("/openstack/latest/user_data")
        waited = asyncio.get_running_loop().time() - started
        await asyncio.sleep(0.7)                           # nova's late answer arrives
        nova.instances["inst-a"].pop("delay")
        after = await get("/openstack/latest/user_data")
        return slow, waited, after
    slow, waited, after = run(scenario, CachePolicy(ttl=0.1, max_stale=60), stale_after=0.2)
    assert (slow[0], slow[1], slow[2]["X-OVNMeta-Cache"]) == (200, b"v1", "stale")
    assert 0.2 <= waited < 0.5
    assert after[1] == b"v2"


def test_a_hung_nova_costs_one_timeout_then_prompt_503s_until_it_answers_again() -> None:
    async def scenario(get, nova, cache, _):
        loop = asyncio.get_running_loop()
        nova.instances["inst-a"]["delay"] = 5
        started = loop.time()
        first = await get()
        first_took = loop.time() - started
        started = loop.time()
        prompt = [await get(f"/openstack/{v}/meta_data.json") for v in ("2013-04-04",
                                                                        "2016-06-30")]
        prompt_took = loop.time() - started
        nova.instances["inst-a"].pop("delay")
        await asyncio.sleep(0.35)                          # the breaker's cooldown
        back = await get()
        return first, first_took, prompt, prompt_took, back
    first, first_took, prompt, prompt_took, back = run(
        scenario, CachePolicy(ttl=60), timeout=0.4, cooldown=0.3)
    assert first[0] == 504 and first_took >= 0.4
    assert [p[0] for p in prompt] == [503, 503] and prompt_took < 0.2
    assert back[0] == 200


def test_a_nova_that_fails_after_the_stale_answer_went_out_is_logged(caplog) -> None:
    async def scenario(get, nova, cache, _):
        await get()
        await asyncio.sleep(0.15)                          # past the TTL
        nova.instances["inst-a"]["delay"] = 2
        stale = await get()
        await asyncio.sleep(0.5)                           # nova's timeout, after the answer
        return stale
    # At DEBUG: THROTTLE is per process, and an earlier test may have logged a timeout
    # at ERROR within its minute.
    with caplog.at_level(logging.DEBUG, logger="ovnmeta.proxy.handler"):
        stale = run(scenario, CachePolicy(ttl=0.1, max_stale=60), timeout=0.4,
                    stale_after=0.1)
    assert stale[2]["X-OVNMeta-Cache"] == "stale"
    assert any("did not answer" in r.getMessage() and "inst-a" in r.getMessage()
               for r in caplog.records)
