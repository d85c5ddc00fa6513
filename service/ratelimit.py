"""Token buckets: per API key (per client address when the API is open), and for failed authentications per
client address (service/guard.py). Per process by default (`RateLimiter`); shared by every replica through
Redis when `RAG_REDIS_URL` is set (`RedisRateLimiter`: one bucket per key or address for the whole service,
so N replicas do not allow N times the limit)."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

from core.errors import RagError
from core.settings import Settings

log = logging.getLogger("rag.service")


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


# One bucket as a Redis hash {tokens, ts}, updated atomically by one script on Redis's own clock (replicas'
# clocks may differ). ARGV: capacity, tokens per second, mode (0 = take one or refuse, 1 = how long until one,
# 2 = take one if any). Returns the seconds to wait (0 = a token was there, and taken unless mode 1), as text.
_BUCKET = """
local capacity, rate, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, last = capacity, now end
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if mode == 0 and tokens >= 1 then tokens = tokens - 1 end
if mode == 2 then tokens = math.max(0, tokens - 1) end
if mode ~= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
end
return tostring(wait)
"""


class RedisRateLimiter:
    """The same token buckets as `RateLimiter`, kept in Redis and shared by every process that uses the same
    `name`. A bucket expires once it would be full again, so Redis holds only the buckets in use. If Redis does
    not answer (within `timeout_s`), the call falls back to this process's own buckets and says so in the log:
    the limit then holds per process, as without Redis, rather than failing every request."""

    def __init__(self, url: str, name: str, per_minute: int, timeout_s: float = 0.5):
        import redis

        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.prefix = f"rag:ratelimit:{name}:"
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.script = self.client.register_script(_BUCKET)
        self.local = RateLimiter(per_minute)
        self._warned = 0.0

    def _call(self, who: str, mode: int) -> float | None:
        key = self.prefix + hashlib.sha256(who.encode()).hexdigest()[:32]
        try:
            return float(self.script(keys=[key], args=[self.capacity, self.rate, mode]))
        except Exception as exc:
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.error("rate limits: Redis does not answer (%s); limiting per process meanwhile", type(exc).__name__)
            return None

    def check(self, who: str) -> None:
        """Take one token for `who`; raises RateLimited when the bucket is empty."""
        wait = self._call(who, 0)
        if wait is None:
            return self.local.check(who)
        if wait > 0:
            raise RateLimited(wait)

    def wait(self, who: str) -> float:
        """Seconds until `who` has a token (0 when it has one now); takes nothing."""
        wait = self._call(who, 1)
        return self.local.wait(who) if wait is None else wait

    def spend(self, who: str) -> None:
        """Take one token for `who` if there is one; never raises."""
        if self._call(who, 2) is None:
            self.local.spend(who)

    def close(self) -> None:
        self.client.close()


def make_limiter(settings: Settings, name: str, per_minute: int | None) -> RateLimiter | RedisRateLimiter | None:
    """`per_minute` tokens a minute per caller (None: no limit): shared through Redis when `redis_url` is set,
    else per process. `name` keeps the kinds of bucket apart ("rate", "auth")."""
    if not per_minute:
        return None
    if settings.redis_url is not None:
        return RedisRateLimiter(settings.redis_url.get_secret_value(), name, per_minute)
    return RateLimiter(per_minute)
