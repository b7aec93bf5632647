"""A thread pool that serves its callers in turn, so one large batch cannot starve the others.

A plain executor runs tasks first in, first out: a bulk request of 1,000 live
lookups queued ahead of a 5-UUID one makes the latter wait for all of them.
Here each ``map`` call is one queue, and the threads take one task from each
queue in turn (round robin).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Batch(Generic[T, R]):
    def __init__(self, call: Callable[[T], R], items: Sequence[T]) -> None:
        self.call = call
        self.tasks: deque[tuple[T, Future[R]]] = deque((item, Future()) for item in items)
        self.futures = [future for _, future in self.tasks]


class FairPool:
    """`workers` daemon threads, started on first use, serving batches round robin."""

    def __init__(self, workers: int, name: str = "instanceapi-pool") -> None:
        self._workers = workers
        self._name = name
        self._ring: deque[_Batch[object, object]] = deque()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []

    def map(self, call: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Return ``[call(item) for item in items]``, run by the pool's threads in turn."""
        if not items:
            return []
        batch: _Batch[T, R] = _Batch(call, items)
        with self._ready:
            self._start_threads()
            self._ring.append(batch)  # type: ignore[arg-type]
            self._ready.notify(len(items))
        return [future.result() for future in batch.futures]

    def _start_threads(self) -> None:
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> tuple[Callable[[object], object], object, Future[object]]:
        with self._ready:
            while not self._ring:
                self._ready.wait()
            batch = self._ring.popleft()
            item, future = batch.tasks.popleft()
            if batch.tasks:
                self._ring.append(batch)  # to the back: the other batches go first
            return batch.call, item, future

    def _work(self) -> None:
        while True:
            call, item, future = self._next()
            try:
                future.set_result(call(item))
            except BaseException as ex:  # handed to the caller, who re-raises it
                future.set_exception(ex)
