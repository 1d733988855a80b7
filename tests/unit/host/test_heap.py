"""heap.trim hands freed heap pages back to the kernel (glibc's malloc_trim)."""

import asyncio

from ovnmeta.host import heap


def test_trim_returns_the_pages_of_freed_blocks() -> None:
    blocks = [bytearray(2000) for _ in range(20_000)]   # 40 MB of malloc'd blocks
    kept = blocks[::50]                                 # 400 survivors, spread out
    del blocks
    before, after, took = heap.trim()
    assert before - after > 20 * 1024, (before, after)  # most of the 40 MB came back
    assert took < 5
    assert len(kept) == 400


def test_keep_trimmed_trims_until_stopped(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1) or (2, 1, 0.0))

    async def main() -> None:
        stopped = asyncio.Event()
        task = asyncio.create_task(heap.keep_trimmed(stopped, every=0.01, first=0.0))
        while len(calls) < 3:
            await asyncio.sleep(0.005)
        stopped.set()
        await asyncio.wait_for(task, 1)
    asyncio.run(main())
    assert len(calls) >= 3
