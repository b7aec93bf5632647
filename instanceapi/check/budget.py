"""The upstream budget of one process: how many live lookups may run at once, and how fast.

Every Nova GET a check sends on its own (not the index refreshes) costs one
token of a token bucket, and every live check holds one concurrency slot while
it runs. When either is exhausted the check is refused at once (``Overloaded``:
503 with ``Retry-After``, or a per-item ``code: 503`` in bulk): a flood costs
the caller answers, not OpenStack calls.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Overloaded(Exception):
    """The upstream budget is spent: come back later (503, never a 404)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; thread-safe, never blocks."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token if there is one; return whether it was taken."""
        with self._lock:
            self._refill()
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def wait_hint(self) -> int:
        """Return whole seconds until a token is likely to be there (at least 1)."""
        with self._lock:
            self._refill()
            return max(1, math.ceil((1.0 - self._tokens) / self._rate))

    def _refill(self) -> None:
        now = self._clock()
        # NOTE: max(): a clock that steps back must not take tokens away.
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._stamp = now


class UpstreamBudget:
    """A concurrency limit on live checks plus a rate limit on the Nova GETs they send."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: int = 100,
        concurrency: int = 12,
        slot_wait: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: None: no rate limit (tests, the ``check`` command); the service sets one.
        self._bucket = TokenBucket(rate, burst, clock=clock) if rate else None
        self._slots = threading.BoundedSemaphore(concurrency)
        self._slot_wait = slot_wait

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one concurrency slot for a live check, or raise Overloaded."""
        if not self._slots.acquire(timeout=self._slot_wait):
            raise Overloaded("every upstream lookup slot is busy; retry later")
        try:
            yield
        finally:
            self._slots.release()

    def spend(self) -> None:
        """Pay for one upstream request, or raise Overloaded if the rate is used up."""
        if self._bucket is not None and not self._bucket.take():
            raise Overloaded(
                "the upstream request budget is used up; retry later",
                retry_after=self._bucket.wait_hint(),
            )
