"""Live updates: an in-process event bus (feed threads publish, server-sent-event streams subscribe).

Events are small JSON objects: ``{"type": "incident", "incident_id", "camera_id", "change"}``
(change: opened, escalated, acknowledged, labelled, cleared), ``{"type": "camera", "camera_id",
"state"}`` (the state it shows changed) and ``{"type": "camera", "camera_id", "outage_id", "change"}``
(change: outage-opened, outage-recovered, paged), plus ``{"type": "cameras"}`` (fps, scores or
thumbnails moved; at most every few seconds). The pages re-fetch the affected part; the API's ``/api/events`` hands the same stream to
scripts. A subscriber that falls ``QUEUE_MAX`` events behind is dropped (its browser reconnects).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from spillwatch.logs import get_logger

log = get_logger("console.live")

QUEUE_MAX = 256
PING_S = 15.0


class EventBus:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._lock = threading.Lock()
        self.published = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The server's event loop (set at start-up); publishing before that is a no-op."""
        self._loop = loop

    def publish(self, event: dict[str, Any]) -> None:
        """From any thread."""
        self.published += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fanout, event)
        except RuntimeError:  # loop closing
            pass

    def _fanout(self, event: dict[str, Any] | None) -> None:
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                with self._lock:
                    self._subs.discard(q)
                log.info("live subscriber too slow; dropped")

    def close_all(self) -> None:
        """End every stream (server shutdown)."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._fanout, None)
            except RuntimeError:
                pass

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    async def stream(self, max_s: float) -> AsyncIterator[str]:
        """Server-sent-event lines for one client, for at most ``max_s`` (the browser reconnects,
        and its session is checked again)."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_MAX)
        with self._lock:
            self._subs.add(q)
        try:
            yield "retry: 2000\nevent: hello\ndata: {}\n\n"
            end = time.monotonic() + max_s
            while (left := end - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(q.get(), timeout=min(PING_S, left))
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                if event is None:
                    return
                with self._lock:
                    if q not in self._subs:
                        return  # dropped for lagging
                yield f"event: {event.get('type', 'message')}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
        finally:
            with self._lock:
                self._subs.discard(q)
