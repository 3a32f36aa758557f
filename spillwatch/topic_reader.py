"""Read topics without a consumer group (from the beginning by default): a pure observer of the pipeline.

One reader serves every observer (the demo's progress, the benchmarks, the replay's collector,
``alerts tail --from-beginning`` and the tests): it assigns every partition of the given topics,
seeks to the beginning and hands out records with the time they were received. No group means no
join delay and no committed offsets: it never changes what the services see.

Use it directly (``poll``/``read``/``wait_for``) or in the background (``start``: a daemon thread
collects into ``records``; ``handler`` is called for each record under ``lock``)::

    with TopicReader(settings, [settings.topics.classifications]) as reader:
        records = reader.read(min_count=10, timeout_s=30)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spillwatch.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from spillwatch.settings import Settings

log = get_logger("spillwatch.topic_reader")


@dataclass(frozen=True)
class Received:
    """One record and when this reader received it (unix seconds)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    received_at: float


class TopicNotFound(RuntimeError):
    """A topic to read does not exist (or has no partitions) on the broker."""


class TopicReader:
    """Every partition of ``topics`` from the beginning, no consumer group.

    ``wait_topics_s``: how long to wait for the topics' metadata (topics created just before).
    ``missing_ok``: a topic that never appears is skipped instead of raising TopicNotFound.
    ``handler``: called with each record (in the background thread, under ``lock``) instead of, or as
    well as, keeping it (``keep``). ``from_beginning=False`` reads only what is published from now on;
    ``lookback=N`` starts N records before the end of each partition (the recent past of a busy topic,
    e.g. the newest heartbeat of every camera); ``seek_back`` + ``read_to`` repeat that later.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Iterable[str],
        *,
        wait_topics_s: float = 20.0,
        missing_ok: bool = False,
        handler: Callable[[Received], None] | None = None,
        keep: bool = True,
        from_beginning: bool = True,
        lookback: int | None = None,
        client_id: str = "spillwatch-reader",
        **consumer_overrides: Any,
    ) -> None:
        from kafka import TopicPartition

        from spillwatch.kafka import make_consumer

        self.topics = list(topics)
        self.settings = settings
        self.handler = handler
        self.keep = keep
        self.records: list[Received] = []
        self.lock = threading.Lock()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next: dict[tuple[str, int], int] = {}  # next offset to read, per partition
        overrides: dict[str, Any] = {"enable_auto_commit": False, "client_id": client_id}
        overrides.update(consumer_overrides)
        self._c = make_consumer(settings, [], group_id=None, **overrides)
        try:
            tps = []
            for topic in self.topics:
                parts = self._partitions(topic, wait_topics_s)
                if not parts:
                    if missing_ok:
                        continue
                    raise TopicNotFound(f"topic {topic} not found on {settings.kafka.bootstrap}")
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            self._c.assign(tps)
            self._partitions_read = [(tp.topic, tp.partition) for tp in tps]
            if tps and lookback is not None:
                self.seek_back(lookback)
            elif tps:
                (self._c.seek_to_beginning if from_beginning else self._c.seek_to_end)(*tps)
        except BaseException:
            self._c.close()
            raise

    def _partitions(self, topic: str, wait_s: float) -> set[int] | None:
        deadline = time.monotonic() + wait_s
        while True:
            parts = self._c.partitions_for_topic(topic)
            if parts or time.monotonic() >= deadline:
                return parts
            time.sleep(0.1)

    # ------------------------------------------------------------------ foreground
    def poll(self, timeout_ms: int = 200, max_records: int = 1000) -> list[Received]:
        """One fetch: the records received now (also kept in ``records`` and passed to ``handler``)."""
        batch = self._c.poll(timeout_ms=timeout_ms, max_records=max_records)
        now = time.time()
        got = [
            Received(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers or []), now)
            for recs in batch.values()
            for r in recs
        ]
        if got:
            with self.lock:
                for rec in got:
                    self._next[(rec.topic, rec.partition)] = max(self._next.get((rec.topic, rec.partition), 0), rec.offset + 1)
                if self.keep:
                    self.records.extend(got)
                if self.handler is not None:
                    for rec in got:
                        self.handler(rec)
        return got

    def read(self, *, min_count: int = 0, timeout_s: float = 10.0, idle_s: float = 1.0) -> list[Received]:
        """Poll until ``min_count`` records were kept, or (``min_count=0``) until nothing new came for
        ``idle_s``; returns everything kept so far. Never raises on timeout: check the count."""
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll():
                last_new = time.monotonic()
            if min_count and self.count() >= min_count:
                break
            if not min_count and time.monotonic() - last_new > idle_s:
                break
        return self.snapshot()

    def wait_for(self, pred: Callable[[list[Received]], Any], timeout_s: float = 15.0) -> Any:
        """Poll (or, when started, watch) until ``pred(records so far)`` is truthy; returns its value.
        Raises TimeoutError naming the topics when it never is."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._thread is None:
                self.poll()
            value = pred(self.snapshot())
            if value:
                return value
            if self.error:
                raise RuntimeError(f"reader of {self.topics} failed: {self.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition on {self.topics} not met within {timeout_s} s")
            if self._thread is not None:
                time.sleep(0.05)

    def caught_up(self) -> bool:
        """True when this reader has handled every record the broker held when asked (the end
        offset of each partition): a positive signal that nothing published before is still unread."""
        from kafka import TopicPartition

        from spillwatch.kafka import make_consumer

        probe = make_consumer(self.settings, [], group_id=None, enable_auto_commit=False, client_id="spillwatch-reader-probe")
        try:
            ends = probe.end_offsets([TopicPartition(t, p) for t, p in self._partitions_read])
        finally:
            probe.close()
        with self.lock:
            return all(self._next.get((tp.topic, tp.partition), 0) >= end for tp, end in ends.items() if end > 0)

    def wait_caught_up(self, timeout_s: float = 15.0) -> None:
        """Wait until ``caught_up``; TimeoutError naming the topics otherwise."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up():
            if self._thread is None:
                self.poll()
            if time.monotonic() > deadline:
                raise TimeoutError(f"reader of {self.topics} not caught up within {timeout_s} s")
            if self._thread is not None:
                time.sleep(0.05)

    def seek_back(self, n: int) -> dict[tuple[str, int], int]:
        """Move every partition to ``n`` records before its end (not before its beginning); returns
        the end offsets, to read up to with ``read_to``."""
        from kafka import TopicPartition

        tps = [TopicPartition(t, p) for t, p in self._partitions_read]
        if not tps:
            return {}
        ends = self._c.end_offsets(tps)
        begins = self._c.beginning_offsets(tps)
        with self.lock:
            for tp in tps:
                start = max(int(begins[tp] or 0), int(ends[tp] or 0) - max(0, n))
                self._c.seek(tp, start)
                self._next[(tp.topic, tp.partition)] = start
        return {(tp.topic, tp.partition): int(ends[tp] or 0) for tp in tps}

    def read_to(self, ends: dict[tuple[str, int], int], timeout_s: float = 10.0) -> bool:
        """Poll (foreground) until every partition is read up to ``ends``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                done = all(self._next.get(tp, 0) >= end for tp, end in ends.items())
            if done:
                return True
            if time.monotonic() > deadline:
                return False
            self.poll(timeout_ms=200)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.records)

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    # ------------------------------------------------------------------ background
    def start(self) -> TopicReader:
        """Collect in a daemon thread until ``close``."""
        self._thread = threading.Thread(target=self._run, name="topic-reader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.poll(timeout_ms=50, max_records=2000)
        except Exception as exc:  # noqa: BLE001 - surfaced through .error / wait_for
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("topic reader failed", topics=self.topics, error=self.error)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._c.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
