"""Rate limits (pure: the caller passes the time): token buckets per key, failed-login windows.

In memory per worker: with N workers a key gets at most N times its rate, which still stops a
runaway integration from flooding the correlator.
"""

from collections import deque
from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    """`rate` requests per second sustained, `burst` at once, per key."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, t)

    def take(self, key: str, now: float) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is there."""
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


@dataclass
class FailureWindow:
    """At most `limit` failures per name within `seconds`; then refuse until the oldest ages out."""

    limit: int
    seconds: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked_for(self, name: str, now: float) -> float:
        times = self._failures.get(name)
        if not times:
            return 0.0
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.seconds - now

    def failed(self, name: str, now: float) -> None:
        self._failures.setdefault(name, deque()).append(now)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
