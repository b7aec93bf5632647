"""Two small concurrency tools of the checker: a bounded memory and shared lookups."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedCache(Generic[T]):
    """A thread-safe least-recently-used map with a fixed capacity."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        """Return the value for `key` (marking it recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: T) -> None:
        """Remember `value`, forgetting the least recently used entry when full."""
        if self._capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        """Forget `key` if present."""
        with self._lock:
            self._items.pop(key, None)

    def keys(self) -> list[str]:
        """Return a snapshot of the keys."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


class SingleFlight(Generic[T]):
    """Run one call per key at a time; concurrent callers for a key share its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[T]] = {}

    def run(self, key: str, call: Callable[[], T]) -> T:
        """Return call()'s result, or that of the same key's call already under way."""
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if future is None:
                future = self._calls[key] = Future()
        if not leader:
            return future.result()
        try:
            result = call()
        except BaseException as ex:
            future.set_exception(ex)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]
