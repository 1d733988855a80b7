"""Recurring failures logged once a minute, not once per request: an outage must not
bury the log in the same line."""

from __future__ import annotations

import logging
import time


class Throttle:
    """Log a recurring failure once, then once a minute with how often it recurred."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, logger: logging.Logger, level: int, key: str, msg: str, *args) -> None:
        now = time.monotonic()
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
