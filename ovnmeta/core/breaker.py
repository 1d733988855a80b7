"""Whether to ask nova at all: after nova failed (refused, timed out, a gateway's 502-504),
requests that have no kept answer get a prompt 503 instead of each waiting for the same
failure, and one request at a time probes whether nova is back. Time is passed in."""

from __future__ import annotations

from dataclasses import dataclass

GATEWAY_FAILURES = frozenset({502, 503, 504})   # a load balancer in front of a failing nova


@dataclass
class Breaker:
    """Closed: ask nova. Open (for `cooldown` s after a failure): do not. Then half-open:
    one probe at a time is let through; its success closes the breaker, its failure opens
    it again. A 500 is one instance's trouble, not nova's, and does not count."""
    cooldown: float = 2.0
    open_until: float = 0.0       # 0: closed
    probing: bool = False
    openings: int = 0             # times nova was found failing (closed → open)

    @property
    def closed(self) -> bool:
        return self.open_until == 0.0

    def allow(self, now: float) -> bool:
        """May this request ask nova? In half-open state, True makes it the probe: it must
        end in succeeded() or failed(), or in released() if it never asked."""
        if self.closed:
            return True
        if now < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def retry_after(self, now: float) -> int:
        """Seconds until nova is asked again, for Retry-After (at least 1)."""
        return max(1, int(self.open_until - now + 0.999))

    def succeeded(self) -> None:
        self.open_until, self.probing = 0.0, False

    def failed(self, now: float) -> None:
        if self.closed:
            self.openings += 1
        self.open_until, self.probing = now + self.cooldown, False

    def released(self) -> None:
        """The probe ended without an answer either way (the client went away)."""
        self.probing = False

    def record(self, status: int, now: float) -> None:
        """nova answered with `status`."""
        if status in GATEWAY_FAILURES:
            self.failed(now)
        else:
            self.succeeded()
