"""Token buckets: per API key (per client address when the API is open), and for failed authentications per
client address (service/guard.py)."""

from __future__ import annotations

import math
import threading
import time

from core.errors import RagError


class RateLimited(RagError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, retry_after_s: float, reason: str = "too many requests"):
        super().__init__(f"{reason}; retry in {retry_after_s:.1f} s")
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class RateLimiter:
    """`per_minute` tokens a minute per `who`, in bursts of up to `per_minute`. At most `max_buckets` are kept:
    past that, full buckets (which hold nothing worth keeping) are dropped, then the least recently used."""

    def __init__(self, per_minute: int, clock=time.monotonic, max_buckets: int = 100_000):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, last time)
        self._lock = threading.Lock()

    def _tokens(self, who: str, now: float) -> float:
        tokens, last = self._buckets.get(who, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def _store(self, who: str, tokens: float, now: float) -> None:
        self._buckets.pop(who, None)  # re-inserted last: dict order is least recently used first
        self._buckets[who] = (tokens, now)
        if len(self._buckets) > self.max_buckets:
            self._buckets = {
                w: (t, last) for w, (t, last) in self._buckets.items() if t + (now - last) * self.rate < self.capacity
            }
            for w in list(self._buckets)[: max(0, len(self._buckets) - self.max_buckets // 2)]:
                del self._buckets[w]

    def check(self, who: str) -> None:
        """Take one token for `who`; raises RateLimited when the bucket is empty."""
        now = self.clock()
        with self._lock:
            tokens = self._tokens(who, now)
            if tokens < 1.0:
                self._store(who, tokens, now)
                raise RateLimited((1.0 - tokens) / self.rate)
            self._store(who, tokens - 1.0, now)

    def wait(self, who: str) -> float:
        """Seconds until `who` has a token (0 when it has one now); takes nothing."""
        with self._lock:
            tokens = self._tokens(who, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def spend(self, who: str) -> None:
        """Take one token for `who` if there is one; never raises."""
        now = self.clock()
        with self._lock:
            self._store(who, max(0.0, self._tokens(who, now) - 1.0), now)
