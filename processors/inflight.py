"""Batches in flight in the classifier worker: the next batches are classified while the broker
acknowledges the earlier ones, and what leaves goes out in batch order (docs/performance.md).

``InFlight.submit`` hands a batch over: its classification starts at once (in the classifier's one
thread, queued behind the batches before it), and the call returns while fewer than ``ahead``
batches wait to be sent. A collector task takes the batches in the order they were submitted: it
waits for a batch's classification, then for the previous batch's send (its records acknowledged
by the broker and its frames acked), and only then starts the batch's own send. So:

* the thread goes from one batch to the next without waiting for the event loop (the batch after
  it is already queued), which a saturated worker lost ~6 % of its time to;
* a batch's results are sent as soon as they are ready and the batch before is acknowledged, with
  no need for another batch to arrive (a camera's last frames are never held back);
* sends keep batch order, and per-camera order with it; while the broker is away the collector
  holds, at most ``ahead`` + 1 batches are in flight, and the agent stops taking records;
* a failed send (``finish`` raised) stops the collector; the next ``submit`` (or ``drain``) raises
  it in the agent. ``cancel`` drops what is in flight without acking it (it is redelivered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

B = TypeVar("B")
R = TypeVar("R")


class InFlight(Generic[B, R]):
    """Classify ahead, send in order. ``classify(batch)`` and ``finish(batch, result)`` are the
    stage's own steps; ``ahead`` (>= 1) bounds the batches classified or classifying whose send has
    not started."""

    def __init__(self, classify: Callable[[B], Awaitable[R]], finish: Callable[[B, R], Awaitable[None]], ahead: int = 2) -> None:
        if ahead < 1:
            raise ValueError("ahead must be at least 1")
        self._classify, self._finish = classify, finish
        self._slots = asyncio.Semaphore(ahead)
        self._queue: asyncio.Queue[tuple[B, asyncio.Future[R]] | None] = asyncio.Queue()
        self._collector: asyncio.Task[None] | None = None
        self._sending: asyncio.Future[None] | None = None  # the last batch's send (finish)

    async def submit(self, batch: B) -> None:
        """Start classifying ``batch``; waits while ``ahead`` batches are not yet being sent, and
        raises what stopped the collector."""
        collector = self._running()
        slot = asyncio.ensure_future(self._slots.acquire())
        try:
            await asyncio.wait({slot, collector}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not slot.done():
                slot.cancel()
        if not slot.done() or slot.cancelled():
            self._raise_from(collector)
        self._queue.put_nowait((batch, asyncio.ensure_future(self._classify(batch))))

    async def drain(self) -> None:
        """Wait until every submitted batch is sent (the stream ended)."""
        collector = self._running()
        self._queue.put_nowait(None)
        await collector

    def cancel(self) -> None:
        """Drop what is in flight: nothing of it is acked."""
        for task in (self._sending, self._collector):
            if task is not None and not task.done():
                task.cancel()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item[1].done():
                item[1].cancel()

    def _running(self) -> asyncio.Task[None]:
        if self._collector is None:
            self._collector = asyncio.ensure_future(self._collect())
        elif self._collector.done():
            self._raise_from(self._collector)
        return self._collector

    @staticmethod
    def _raise_from(collector: asyncio.Task[None]) -> None:
        exc = collector.exception() if not collector.cancelled() else asyncio.CancelledError()
        raise exc or RuntimeError("the batch collector stopped")

    async def _collect(self) -> None:
        while (item := await self._queue.get()) is not None:
            batch, work = item
            try:
                result = await work
                if self._sending is not None:
                    await self._sending  # the broker has batch N before batch N+1 is sent
                self._sending = asyncio.ensure_future(self._finish(batch, result))
            finally:
                self._slots.release()
        if self._sending is not None:
            await self._sending
