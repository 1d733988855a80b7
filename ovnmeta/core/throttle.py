"""Recurring failures logged once a minute, not once per request: an outage must not
bury the log in the same line."""

from __future__ import annotations

import logging
import time


class Throttle:
    """Log a recurring failure once, then once a minute with how often it recurred."""

    def __init__(self, interval: float = 60.0, max_keys: int = 4096) -> None:
        self.interval, self.max_keys = interval, max_keys
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, logger: logging.Logger, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if key not in self._last and len(self._last) >= self.max_keys:
            self._forget(now)
        last, count = self._last.get(key, (0.0, 0))
        if last and now - last < self.interval:
            self._last[key] = (last, count + 1)
            logger.debug(msg, *args)
            return
        self._last[key] = (now, 0)
        if count:
            msg += " (%d more since last logged)"
            args = (*args, count)
        logger.log(level, msg, *args)

    def _forget(self, now: float) -> None:
        """Bounded, for keys a client chooses (its address): keys past their interval go,
        and if all are recent, the oldest half (their next line is logged again)."""
        self._last = {k: v for k, v in self._last.items() if now - v[0] < self.interval}
        if len(self._last) >= self.max_keys:
            keep = sorted(self._last.items(), key=lambda kv: kv[1][0])[self.max_keys // 2:]
            self._last = dict(keep)
