"""Per-client rate limits for the public app: a token bucket per client address."""

import math
import threading
import time

from aipic.common.errors import RateLimited


class RateLimiter:
    """At most ``per_minute`` requests per client, with bursts up to ``burst``; 0 turns it off.

    Tests and benchmarks on 127.0.0.1 turn it off with AIPIC_RATE_LIMIT=0.
    """

    def __init__(self, per_minute: float, burst: int | None = None, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, min(int(per_minute), 5)))
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, client: str | None) -> None:
        """Take one token for this client, or raise RateLimited saying how long to wait."""
        if not self.enabled:
            return
        key = client or "unknown"
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                wait = (1 - tokens) / self.rate
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"Too many requests from you: at most {self.rate * 60:g} a minute. Please try again in {max(1, math.ceil(wait))} s.")
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}
