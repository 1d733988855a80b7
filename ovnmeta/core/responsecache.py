"""nova's answers kept on the host, per instance: the decisions, with time passed in.

What may be kept: a GET's or HEAD's 200 that nova did not mark `no-store`, for a path that is
not the password endpoint, no larger than one entry's bound. What a lookup gives: a fresh
answer (younger than the TTL, nova's own metadata_cache_expiration) that is served without
asking nova; a stale one (younger than the maximum stale age) that is served only when nova
fails; or nothing.

The bound is in bytes, least recently used first, and fair between instances: the entries
evicted to make room are those of the instance holding the most bytes, so a VM that floods
distinct paths evicts its own entries before any neighbour's. Keys come from the instance
the agent identified, never from anything the VM sent.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
ENTRY_OVERHEAD = 180    # bytes of the key, the entry and the answer objects
HEADER_OVERHEAD = 85    # bytes of one header's tuple and strings beyond their text


@dataclass(frozen=True)
class CachePolicy:
    ttl: float = 15.0               # seconds an answer is fresh: nova's default expiration
    max_stale: float = 86400.0      # seconds an answer may stand in for a failing nova
    max_bytes: int = 64 * 1024 * 1024
    max_entry_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Key:
    instance_id: str
    method: str
    target: str      # path and query, as the VM sent them


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def size(self) -> int:
        """What keeping it costs: its bytes, and the Python objects around them (measured
        with tracemalloc: some 180 bytes an entry and 85 a header), so that max_bytes
        bounds the memory the cache takes, not only the payload."""
        return ENTRY_OVERHEAD + len(self.body) + sum(
            HEADER_OVERHEAD + len(k) + len(v) for k, v in self.headers)


@dataclass(slots=True)
class Entry:
    answer: Answer
    stored_at: float


@dataclass(frozen=True, slots=True)
class Lookup:
    answer: Answer
    age: float
    fresh: bool


def is_password_path(target: str) -> bool:
    """nova's password endpoint (/openstack/<version>/password): a POST sets it, and a GET's
    answer changes when it does; never kept."""
    path = target.split("?", 1)[0].rstrip("/")
    return path.rsplit("/", 1)[-1] == "password"


def no_store(headers: tuple[tuple[str, str], ...]) -> bool:
    return any(k.lower() == "cache-control" and "no-store" in v.lower() for k, v in headers)


@dataclass
class _Instance:
    entries: OrderedDict[Key, Entry] = field(default_factory=OrderedDict)
    size: int = 0


class ResponseCache:
    """Answers by instance, bounded in bytes. Not thread-safe: one event loop owns it."""

    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self._instances: dict[str, _Instance] = {}
        self.size = 0
        self.hits = 0          # fresh answers served
        self.stale_served = 0  # stale answers served for a failing nova
        self.misses = 0
        self.evictions = 0
        self.too_large = 0     # answers over max_entry_bytes, passed through

    def __len__(self) -> int:
        return sum(len(i.entries) for i in self._instances.values())

    def keepable(self, key: Key, answer: Answer, count: bool = True) -> bool:
        """Whether an answer nova gave may be kept (a larger one counts in too_large)."""
        if key.method not in CACHEABLE_METHODS or answer.status != 200 \
                or is_password_path(key.target) or no_store(answer.headers):
            return False
        if answer.size > self.policy.max_entry_bytes:
            self.too_large += count
            return False
        return True

    def lookup(self, key: Key, now: float) -> Lookup | None:
        """The answer kept for key, if not older than max_stale; counts nothing (the caller
        says what it served with hit() or served_stale())."""
        inst = self._instances.get(key.instance_id)
        entry = inst.entries.get(key) if inst else None
        if inst is None or entry is None:
            return None
        age = max(0.0, now - entry.stored_at)
        if age > self.policy.max_stale:
            self._remove(key)
            return None
        inst.entries.move_to_end(key)
        return Lookup(entry.answer, age, age < self.policy.ttl)

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def served_stale(self) -> None:
        self.stale_served += 1

    def store(self, key: Key, answer: Answer, now: float) -> bool:
        """Keep nova's answer if it may be kept; True when kept."""
        if not self.keepable(key, answer):
            return False
        self._remove(key)
        inst = self._instances.setdefault(key.instance_id, _Instance())
        inst.entries[key] = Entry(answer, now)
        inst.size += answer.size
        self.size += answer.size
        while self.size > self.policy.max_bytes:
            self._evict_one()
        return key in inst.entries

    def forget_instance(self, instance_id: str) -> None:
        """Its port left this host: its answers go."""
        inst = self._instances.pop(instance_id, None)
        if inst:
            self.size -= inst.size

    def keep_only(self, instance_ids: set[str]) -> None:
        for gone in set(self._instances) - instance_ids:
            self.forget_instance(gone)

    def instance_bytes(self, instance_id: str) -> int:
        inst = self._instances.get(instance_id)
        return inst.size if inst else 0

    def _evict_one(self) -> None:
        """The least recently used answer of the instance that holds the most bytes."""
        instance_id = max(self._instances, key=lambda i: self._instances[i].size)
        key = next(iter(self._instances[instance_id].entries))
        self._remove(key)
        self.evictions += 1

    def _remove(self, key: Key) -> None:
        inst = self._instances.get(key.instance_id)
        entry = inst.entries.pop(key, None) if inst else None
        if entry is None or inst is None:
            return
        inst.size -= entry.answer.size
        self.size -= entry.answer.size
        if not inst.entries:
            del self._instances[key.instance_id]
