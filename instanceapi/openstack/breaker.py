"""Stop authenticating for a while after Keystone refuses the credentials or fails.

Without it, every lookup of a flood tries the password again: Keystone's
lockout policy then locks the service account. While the breaker is open,
checks fail at once (500, doubt) without a request; after the pause one
caller tries again, and each failure in a row doubles the pause up to a cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: First pause after a failure, and the longest one (seconds).
BASE_PAUSE = 30.0
MAX_PAUSE = 600.0


class CircuitOpen(Exception):
    """Keystone is not asked now; the message says why and for how long."""


class Breaker:
    """Closed: calls go through. Open: refused until the pause ends, then one trial."""

    def __init__(
        self,
        *,
        base: float = BASE_PAUSE,
        cap: float = MAX_PAUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base
        self._cap = cap
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._until = 0.0
        self._reason = ""

    def check(self) -> None:
        """Raise CircuitOpen while open; let one trial call through when the pause is over."""
        with self._lock:
            if not self._failures:
                return
            now = self._clock()
            if now < self._until:
                raise CircuitOpen(
                    f"{self._reason}; not asking Keystone again for {self._until - now:.0f}s"
                )
            # The trial: the others stay refused until its outcome is known.
            self._until = now + self._pause()

    def failed(self, reason: str) -> None:
        """Record a refusal or failure: open, or stay open with a longer pause."""
        with self._lock:
            self._failures += 1
            self._reason = reason
            self._until = self._clock() + self._pause()

    def succeeded(self) -> None:
        """Record a success: close."""
        with self._lock:
            self._failures = 0

    @property
    def is_open(self) -> bool:
        """Return True after a failure not yet followed by a success."""
        return self._failures > 0

    def _pause(self) -> float:
        return float(min(self._cap, self._base * 2.0 ** max(0, self._failures - 1)))
