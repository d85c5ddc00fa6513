"""Per-key rate limiting: a token bucket per API key (per client address when the API is open)."""

from __future__ import annotations

import math
import threading
import time

from core.errors import RagError


class RateLimited(RagError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, retry_after_s: float):
        super().__init__(f"too many requests; retry in {retry_after_s:.1f} s")
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class RateLimiter:
    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, last time)
        self._lock = threading.Lock()

    def check(self, who: str) -> None:
        """Take one token for `who`; raises RateLimited when the bucket is empty."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                raise RateLimited((1.0 - tokens) / self.rate)
            self._buckets[who] = (tokens - 1.0, now)
