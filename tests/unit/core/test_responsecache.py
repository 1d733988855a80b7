"""The per-host cache of nova's answers (core/responsecache.py): what is kept, fresh and
stale by age, the byte bound, and fairness between instances."""

from __future__ import annotations

import pytest

from ovnmeta.core.responsecache import Answer, CachePolicy, Key, ResponseCache

JSON = (("Content-Type", "application/json"),)


def ok(body: bytes = b"{}", headers: tuple[tuple[str, str], ...] = JSON,
       status: int = 200) -> Answer:
    return Answer(status, headers, body)


def key(instance: str = "i-1", target: str = "/openstack/latest/meta_data.json",
        method: str = "GET") -> Key:
    return Key(instance, method, target)


def test_a_kept_answer_is_fresh_within_the_ttl_then_stale_then_gone() -> None:
    cache = ResponseCache(CachePolicy(ttl=15, max_stale=300))
    assert cache.store(key(), ok(b'{"uuid": "i-1"}'), now=100.0)
    got = cache.lookup(key(), now=114.9)
    assert got is not None and got.fresh and got.answer.body == b'{"uuid": "i-1"}'
    got = cache.lookup(key(), now=115.0)
    assert got is not None and not got.fresh and got.age == 15.0
    assert cache.lookup(key(), now=400.1) is None and len(cache) == 0 and cache.size == 0


@pytest.mark.parametrize("k, answer", [
    (key(method="POST"), ok()),
    (key(target="/openstack/2013-04-04/password"), ok()),
    (key(target="/openstack/latest/password/"), ok()),
    (key(), ok(status=404)),
    (key(), ok(status=500)),
    (key(), ok(headers=(("Cache-Control", "private, no-store"),))),
])
def test_what_is_never_kept(k: Key, answer: Answer) -> None:
    cache = ResponseCache(CachePolicy())
    assert not cache.store(k, answer, now=0.0) and cache.lookup(k, now=0.0) is None


def test_heads_and_queries_are_kept_apart() -> None:
    cache = ResponseCache(CachePolicy())
    cache.store(key(target="/latest/meta-data/?x=1"), ok(b"a"), now=0.0)
    assert cache.lookup(key(target="/latest/meta-data/?x=2"), now=1.0) is None
    assert cache.lookup(key(target="/latest/meta-data/?x=1", method="HEAD"), now=1.0) is None
    assert cache.store(key(method="HEAD"), ok(b""), now=0.0)


def test_an_answer_over_the_entry_bound_is_passed_through_not_kept() -> None:
    cache = ResponseCache(CachePolicy(max_entry_bytes=1000))
    assert not cache.store(key(target="/openstack/latest/user_data"), ok(b"x" * 2000), now=0.0)
    assert cache.too_large == 1 and cache.size == 0


def test_a_newer_answer_replaces_the_older_and_its_bytes() -> None:
    cache = ResponseCache(CachePolicy())
    cache.store(key(), ok(b"old" * 10), now=0.0)
    cache.store(key(), ok(b"new"), now=20.0)
    got = cache.lookup(key(), now=21.0)
    assert got is not None and got.answer.body == b"new" and got.fresh
    assert cache.size == ok(b"new").size and len(cache) == 1


def test_a_vm_flooding_distinct_paths_evicts_its_own_answers_not_its_neighbours() -> None:
    entry = ok(b"x" * 100).size
    cache = ResponseCache(CachePolicy(max_bytes=entry * 10))
    for n in range(3):
        cache.store(key("neighbour", f"/openstack/latest/{n}"), ok(b"x" * 100), now=0.0)
    for n in range(1000):
        cache.store(key("flooder", f"/openstack/latest/junk{n}"), ok(b"x" * 100), now=1.0)
    assert cache.size <= entry * 10 and cache.evictions == 1000 - 7
    assert all(cache.lookup(key("neighbour", f"/openstack/latest/{n}"), now=2.0)
               for n in range(3))
    assert cache.instance_bytes("flooder") == entry * 7
    # The flooder's least recently used went first: its last seven are what is left.
    assert cache.lookup(key("flooder", "/openstack/latest/junk999"), now=2.0)
    assert cache.lookup(key("flooder", "/openstack/latest/junk992"), now=2.0) is None


def test_an_instance_that_left_the_host_takes_its_answers_with_it() -> None:
    cache = ResponseCache(CachePolicy())
    cache.store(key("i-1"), ok(b"a"), now=0.0)
    cache.store(key("i-2"), ok(b"b"), now=0.0)
    cache.keep_only({"i-2"})
    assert cache.lookup(key("i-1"), now=1.0) is None and cache.lookup(key("i-2"), now=1.0)
    assert cache.size == ok(b"b").size


def test_the_byte_bound_bounds_the_memory_the_cache_takes() -> None:
    """max_bytes counts the Python objects too: small answers (most of cloud-init's) would
    otherwise take several times the bound."""
    import tracemalloc
    headers = (("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "12"),
               ("Date", "Sun, 06 Dec 2026 06:00:00 GMT"), ("Server", "Python/3.11 aiohttp"))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = ResponseCache(CachePolicy(max_bytes=2**20))
        for i in range(20_000):
            cache.store(key(instance=f"inst-{i % 200:04d}", target=f"/latest/meta-data/{i}"),
                        Answer(200, tuple((k, v + "") for k, v in headers), b"ami-%08d" % i),
                        now=0.0)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.evictions > 0
    assert taken < 1.5 * 2**20, taken
