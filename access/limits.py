"""Rate limits (pure: the caller passes the time): token buckets per key, and the login throttle.

In memory per worker: with N workers a key gets at most N times its rate, which still stops a
runaway integration from flooding the correlator.
"""

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    """`rate` requests per second sustained, `burst` at once, per key."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, t)

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - then) * self.rate)

    def take(self, key: str, now: float) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is there."""
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def wait(self, key: str, now: float) -> float:
        """The seconds until a token is there (0.0: now), spending none."""
        return max(0.0, (1.0 - self._tokens(key, now)) / self.rate)


@dataclass
class Backoff:
    """Failures slow a key down, never lock it: after `free` failures the next try waits 1 s,
    then 2, 4, 8 ... up to `most` seconds after the latest failure. A key quiet for `forget`
    seconds starts again; at most `keys` keys are remembered (the oldest go first)."""

    free: int
    most: float = 300.0
    forget: float = 900.0
    keys: int = 10_000
    _failures: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def wait(self, key: str, now: float) -> float:
        count, last = self._live(key, now)
        if count == 0 or count < self.free:
            return 0.0
        # The exponent is capped: 2.0 ** 2000 would overflow long before `most` applies.
        delay = min(self.most, 2.0 ** min(count - self.free, 60))
        return max(0.0, last + delay - now)

    def failed(self, key: str, now: float) -> None:
        count, _ = self._live(key, now)
        self._failures.pop(key, None)
        self._failures[key] = (count + 1, now)  # newest last, so the oldest are pruned first
        while self._failures:
            oldest, (_, then) = next(iter(self._failures.items()))
            if len(self._failures) <= self.keys and then > now - self.forget:
                break
            del self._failures[oldest]

    def forgive(self, key: str, count: int | None = None) -> None:
        """Forget `count` of the key's failures (None: all of them)."""
        failures, last = self._failures.get(key, (0, 0.0))
        if count is None or failures <= count:
            self._failures.pop(key, None)
        else:
            self._failures[key] = (failures - count, last)

    def _live(self, key: str, now: float) -> tuple[int, float]:
        count, last = self._failures.get(key, (0, now))
        return (0, now) if now - last >= self.forget else (count, last)


@dataclass
class LoginThrottle:
    """Failed logins, limited per user name, per client address and across the service.

    A name's delay stays short (`per_name.most`): anyone can make it grow, and its owner must
    still get in once it has passed. An address's may grow long: only its own failures count,
    and a success forgives just one of them, so a valid account cannot launder a spray.
    `overall` takes a token per failure: a spray from many addresses is limited too.
    """

    per_name: Backoff
    per_address: Backoff
    overall: TokenBuckets

    @classmethod
    def standard(cls, per_name: int, per_address: int, per_minute: float) -> "LoginThrottle":
        return cls(
            per_name=Backoff(free=per_name, most=60.0),
            per_address=Backoff(free=per_address, most=300.0),
            overall=TokenBuckets(rate=per_minute / 60.0, burst=max(1, round(per_minute))),
        )

    def wait(self, name: str, address: str, now: float) -> tuple[float, str]:
        """The longest wait before this try may be checked, and whose it is: 'name',
        'address' or 'service' (0.0: go ahead)."""
        return max(
            (self.per_name.wait(name, now), "name"),
            (self.per_address.wait(address, now), "address"),
            (self.overall.wait("", now), "service"),
        )

    def failed(self, name: str, address: str, now: float) -> None:
        self.per_name.failed(name, now)
        self.per_address.failed(address, now)
        self.overall.take("", now)

    def succeeded(self, name: str, address: str) -> None:
        self.per_name.forgive(name)
        self.per_address.forgive(address, 1)
