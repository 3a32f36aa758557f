"""The Faust app: classifier and aggregator agents wired to Kafka and Redis.

``create_app(settings, role)`` builds one app per role, so each role is its own consumer group and
scales on its own (more ``spillwatch worker`` processes = more classifier members):

- ``classifier`` (group ``<prefix>spillwatch-classifier``) on ``frames``: batches with
  ``stream.take_events(worker.batch_size, within=worker.batch_timeout_s)``, decodes and infers off the
  event loop (ONNX Runtime releases the GIL, heartbeats keep flowing) in runs of at most
  ``worker.inference_batch`` frames (a batch of mostly unchanged frames is cheap: the take is large,
  the runs stay small), emits one Classification per
  frame to ``classifications`` keyed by camera id, dead-letters the rest to ``frames.dlq``, and
  keeps suspicious JPEGs in Redis for the evidence snapshot. Change gating (processors/gating.py)
  skips the model on frames whose scene has not changed (``inferred: false``). Up to three batches are
  in flight (processors/inflight.py): while one batch's records wait for the broker, the next is
  decoded and inferred in the classifier's own thread and the one after it waits in that thread's
  queue; a batch is sent only once the previous one is acknowledged (per-camera order is kept).
- ``aggregator`` (group ``<prefix>spillwatch-aggregator``) on ``classifications``: validates, runs the
  state machine through Redis, publishes SpillAlerts to ``spill-alerts`` keyed by camera id; a timer
  escalates unacknowledged incidents and flushes the alert outbox. The same app hosts the camera
  monitor (processors/camera_monitor.py: ``camera-health`` -> ``camera-alerts``).

At-least-once throughout: a batch's records are acked only after everything it produced has been
acknowledged by the broker, so a killed worker's frames are redone by the member that takes over
(duplicates are dropped downstream by sequence number). No Faust tables (state lives in Redis), so
the local broker's offset bug cannot bite and ``producer_max_batch_size`` stays unlimited.

A stop never acknowledges unfinished work. Faust acks a batch of ``take_events`` (and the current
event of ``events()``) in a ``finally`` when the agent's loop is torn down, including when SIGTERM
cancels the agent in the middle of a batch; the consumer then commits those offsets on its way out
and the records are lost. Each agent therefore holds one extra reference on every message it works
on (:class:`AckWhenDone`) and gives it back only when the work is done: a cancelled batch keeps its
references, is never committed, and is redelivered to whoever owns the partition next.

Failures (processors/retry.py): a broker or Redis outage holds the batch and retries without limit;
a record that the broker refuses for good, or that fails the same way ``limits.record_attempts``
times, is dead-lettered (bounded: ``events.DeadLetter``) and the stage moves on.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from processors.retry import Attempts, holding, redis_error_is_outage, send_error_is_permanent
from spillwatch import metrics
from spillwatch.events import DeadLetter
from spillwatch.kafka import faust_broker_settings
from spillwatch.logs import get_logger
from spillwatch.model_card import ModelError, card_path_for, read_card
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings

if TYPE_CHECKING:  # the classifier's modules load the model runtime: imported where the role needs them
    from processors.classifier import BatchTimings, Classified, Rejected

Role = Literal["classifier", "aggregator"]
log = get_logger("processors.app")


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def app_id(settings: Settings, role: Role) -> str:
    return f"{settings.kafka.topic_prefix}spillwatch-{role}"


def model_thresholds(settings: Settings) -> tuple[float, float]:
    """(threshold, map_threshold) for the aggregator: from the model card beside ``worker.model_path``
    (the card alone, no ONNX Runtime), ``aggregator.threshold`` overriding the threshold."""
    card_path = card_path_for(Path(settings.worker.model_path))
    if card_path.is_file():
        card = read_card(card_path)
        thr = settings.aggregator.threshold if settings.aggregator.threshold is not None else card.threshold
        return thr, card.map_threshold
    if settings.aggregator.threshold is not None:
        return settings.aggregator.threshold, 0.5
    raise ModelError(f"no model card at {card_path} and no aggregator.threshold set: cannot pick a threshold")


MAX_POLL_BATCHES = 8  # a poll returns at most this many of the agent's batches


def _faust_kwargs(settings: Settings, role: Role, web_port: int | None) -> dict[str, Any]:
    kw = faust_broker_settings(settings, safe_offsets=False)
    datadir = settings.faust_datadir(app_id(settings, role))
    datadir.mkdir(parents=True, exist_ok=True)
    kw.update(
        id=app_id(settings, role),
        datadir=str(datadir),  # under settings.data_dir, not "<id>-data" in the working directory
        autodiscover=False,
        store="memory://",
        topic_disable_leader=True,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
    )
    if role == "classifier":
        # Faust's stream buffer (4096 by default): past 80 % full Faust stops fetching the
        # partitions that deliver to it, and fetches them again only once the agent has emptied it;
        # the Kafka client meanwhile counts the consumer idle and leaves the group after the
        # profile's Faust max poll interval. With 4096 and the 10 s the local profile had, a
        # backlogged classifier under ~330 frames/s (~80 with 1024) left its group and the workers
        # stalled for good (`bench pipeline`: nothing classified for 120 s after a 30 s run, both
        # scenes). That interval is now 300 s (spillwatch/kafka.py); 1024 frames keeps the pause
        # under it down to ~3 frames/s and bounds the frames a worker holds (~20-60 MB).
        kw["stream_buffer_maxsize"] = settings.worker.stream_buffer
    # The same idle clock runs while Faust pushes one poll's records into a full buffer: an
    # unbounded poll returns every record the client prefetched. A poll of a few batches keeps
    # that to seconds (256 frames with takes of 32: ~2.5 s for a busy one-thread worker), far
    # under the 300 s.
    batch = settings.worker.batch_size if role == "classifier" else settings.aggregator.batch_size
    kw["broker_max_poll_records"] = MAX_POLL_BATCHES * batch
    return kw


def _raw_topic(app: Any, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


class AckWhenDone:
    """Hold a reference on each event's message while the ``with`` body runs; give it back (ack)
    only when the body completes. A body that is cancelled (SIGTERM) or raises keeps the reference,
    so Faust's own ack in its ``finally`` cannot mark the record done: it is never committed and
    is redelivered."""

    def __init__(self, events: Sequence[Any]) -> None:
        self.events = list(events)

    def __enter__(self) -> AckWhenDone:
        for e in self.events:
            e.message.incref()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            for e in self.events:
                e.ack()


@dataclass(frozen=True)
class Outgoing:
    """One record to produce. ``fallback`` gives what to send instead when the broker refuses this
    record for good (a smaller dead letter), or None to give it up (logged)."""

    topic: Any
    key: bytes | None
    value: bytes
    what: str = "record"
    fallback: Callable[[BaseException], Outgoing | None] | None = None


class SendIncomplete(RuntimeError):
    """Some records of a batch are not acknowledged yet (raised to retry them)."""

    def __init__(self, failed: int, error: BaseException) -> None:
        super().__init__(f"{failed} record(s) not acknowledged: {error!r}")
        self.error = error
        self.__cause__ = error


async def _send_all(sends: Sequence[Outgoing], *, attempts: int = 3) -> None:
    """Send and wait until the broker has every record (before the batch is acked).

    While the broker is away, retry with backoff and hold the batch: its records stay un-acked,
    nothing is skipped (a retry may duplicate some records; consumers drop duplicates by sequence
    number). A record the broker refuses for good (too large, invalid) ``attempts`` times is
    replaced by its ``fallback`` (a bounded dead letter), so it can never hold a stage forever."""
    pending = list(sends)
    faults: dict[int, int] = {}

    async def once() -> None:
        nonlocal pending
        futs: list[Any] = []
        errors: list[BaseException | None] = []
        for rec in pending:
            try:
                futs.append(await rec.topic.send(key=rec.key, value=rec.value))
                errors.append(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted out below
                futs.append(None)
                errors.append(exc)
        results = await asyncio.gather(*(f for f in futs if f is not None), return_exceptions=True)
        it = iter(results)
        for i, f in enumerate(futs):
            if f is not None:
                r = next(it)
                if isinstance(r, BaseException):
                    if isinstance(r, asyncio.CancelledError):
                        raise r
                    errors[i] = r
        still: list[Outgoing] = []
        last: BaseException | None = None
        for rec, err in zip(pending, errors, strict=True):
            if err is None:
                continue
            last = err
            if send_error_is_permanent(err):
                n = faults[id(rec)] = faults.get(id(rec), 0) + 1
                if n >= attempts:
                    instead = rec.fallback(err) if rec.fallback is not None else None
                    log.error("record refused by the broker; replaced" if instead else "record refused by the broker; given up",
                              what=rec.what, bytes=len(rec.value), error=repr(err), tries=n)
                    if instead is not None:
                        still.append(instead)
                    continue
            still.append(rec)
        pending = still
        if pending:
            assert last is not None
            raise SendIncomplete(len(pending), last)

    # Outages hold the batch for as long as they last; refused records are handled in once().
    async for attempt in holding(Attempts(limit=1, is_outage=lambda _: True), "send", records=len(pending)):
        with attempt:
            await once()


def _dead_letter(
    settings: Settings,
    topic: str,
    key: bytes | None,
    payload: bytes | None,
    reason: str,
    category: str,
    service: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
    payload_limit: int | None = None,
) -> bytes:
    metrics.DEAD_LETTERS.labels(topic, category).inc()
    limit = settings.limits.dead_letter_payload_bytes if payload_limit is None else payload_limit
    return DeadLetter.wrap(
        source_topic=topic, key=key, payload=payload, reason=reason, service=service, category=category,
        partition=partition, offset=offset, payload_limit=limit,
    ).to_bytes()


def _dead_letter_out(
    settings: Settings, dlq: Any, source: str, key: bytes | None, payload: bytes | None, reason: str, category: str,
    service: str, *, partition: int | None = None, offset: int | None = None,
) -> Outgoing:
    """A dead letter to send; if the broker refuses it, the same without the payload (size, sha256
    and coordinates only), and if that is refused too it is given up with an error log."""

    def bare(exc: BaseException) -> Outgoing | None:
        value = _dead_letter(settings, source, key, payload, f"{reason} [payload dropped: {exc!r}]", category, service,
                             partition=partition, offset=offset, payload_limit=0)
        return Outgoing(dlq, key, value, what="dead letter without payload")

    value = _dead_letter(settings, source, key, payload, reason, category, service, partition=partition, offset=offset)
    return Outgoing(dlq, key, value, what="dead letter", fallback=bare)


_FETCH_WAIT_PATCHED = False


def _cap_fetch_wait(max_wait_ms: int) -> None:
    """Faust hard-codes aiokafka's ``fetch_max_wait_ms=1500``. Against a broker that does not answer a
    waiting fetch when new records arrive (the local Tansu broker, measured: capture -> classification
    p50 ~0.5-0.6 s at 5 frames/s, p90 1.5-2.7 s), every record can sit up to that long in the broker.
    Cap it for this process's Faust consumers; an idle consumer then polls every ``max_wait_ms``."""
    global _FETCH_WAIT_PATCHED
    if _FETCH_WAIT_PATCHED:
        return
    import types

    import aiokafka
    import faust.transport.drivers.aiokafka as driver

    class _Consumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(int(kwargs.get("fetch_max_wait_ms", 500)), max_wait_ms)
            super().__init__(*args, **kwargs)

    shim = types.ModuleType("aiokafka")
    shim.__dict__.update(vars(aiokafka))
    shim.AIOKafkaConsumer = _Consumer  # type: ignore[attr-defined]
    driver.aiokafka = shim  # type: ignore[attr-defined]
    _FETCH_WAIT_PATCHED = True


def create_app(settings: Settings, role: Role) -> Any:
    import faust

    _cap_fetch_wait(settings.worker.fetch_max_wait_ms)

    web_port = settings.worker.web_port if role == "classifier" else None
    kwargs = _faust_kwargs(settings, role, web_port)
    if role == "classifier":
        # The classifier sends a whole batch at once and then waits for the broker's acks before
        # acking its frames: a producer linger would only add to every batch (measured: the
        # saturated worker's event loop mostly waited; docs/performance.md).
        kwargs["producer_linger"] = 0.0
    app = faust.App(**kwargs)
    if role == "classifier":
        _wire_classifier(app, settings)
    elif role == "aggregator":
        _wire_aggregator(app, settings)
        from processors.camera_monitor import wire_camera_monitor  # camera outages ride in the aggregator

        wire_camera_monitor(app, settings)
    else:  # pragma: no cover
        raise ValueError(f"unknown role {role}")
    return app


# --------------------------------------------------------------------------- classifier


@dataclass
class _Batch:
    """A batch taken from the frames topic: its records, and what its send and ack need."""

    guard: Any  # spillwatch.acks.AckWhenDone, entered
    records: list[tuple[bytes | None, bytes | None]]
    coords: list[tuple[int, int]]
    timings: BatchTimings


class _ClassifierStage:
    """The classifier agent's work on one batch, apart from Faust's wiring: classify the records
    (isolating one that breaks the batch), turn the results into outgoing records, keep evidence
    frames, then send and ack in that order."""

    def __init__(self, app: Any, settings: Settings, core: Any, rds: Any, log: Any) -> None:
        t = settings.topics
        self.settings, self.core, self.rds, self.log = settings, core, rds, log
        self.tries = settings.limits.record_attempts
        self.out = _raw_topic(app, t.classifications)
        self.dlq = _raw_topic(app, t.dead_letter(t.frames))
        self.keys, self.ttl = RedisKeys(settings.redis.key_prefix), settings.aggregator.evidence_frame_ttl_s
        # One thread of its own: batches are classified one at a time and in the order they were
        # submitted (the change gate's per-camera references depend on it), and a batch submitted
        # while the previous one runs starts as soon as it ends, without waiting for the event loop.
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")

    async def _in_thread(self, records: list[tuple[bytes | None, bytes | None]], timings: BatchTimings) -> tuple[list[Classified], list[Rejected]]:
        ctx = contextvars.copy_context()  # as asyncio.to_thread: the log context goes with the work
        return await asyncio.get_running_loop().run_in_executor(self.thread, ctx.run, self.core.process, records, timings)

    async def classify(
        self, records: list[tuple[bytes | None, bytes | None]], timings: BatchTimings
    ) -> tuple[list[Classified], list[Rejected]]:
        """The batch at once; if that raises (a bug or a resource error, not a bad record: those are
        rejected per record), record by record, each up to ``limits.record_attempts`` times."""
        from processors.classifier import Rejected

        try:
            return await self._in_thread(records, timings)
        except Exception as exc:  # noqa: BLE001 - isolate the record that breaks the batch
            self.log.warning("batch failed; classifying its records one by one", error=repr(exc), records=len(records))
        ok: list[Classified] = []
        bad: list[Rejected] = []
        for i, rec in enumerate(records):
            error: BaseException | None = None
            for _ in range(self.tries):
                try:
                    o, b = await self._in_thread([rec], timings)
                except Exception as exc:  # noqa: BLE001
                    error = exc
                    continue
                ok += [c.at(i) for c in o]
                bad += [r.at(i) for r in b]
                break
            else:
                self.log.exception("frame could not be classified; dead-lettered", error=repr(error))
                bad.append(Rejected(rec[0], rec[1], f"classifier error after {self.tries} attempts: {error!r}", "error", index=i))
        return ok, bad

    def outgoing(self, ok: list[Classified], bad: list[Rejected], coords: list[tuple[int, int]]) -> list[Outgoing]:
        """The batch's classifications, then the dead letters of its rejected frames."""
        frames_topic = self.settings.topics.frames
        sends = [Outgoing(self.out, c.key, c.event.to_bytes(), "classification", self._unpublishable(c, coords[c.index]))
                 for c in ok]
        for r in bad:
            part, off = coords[r.index] if 0 <= r.index < len(coords) else (None, None)
            self.log.warning("frame dead-lettered", reason=r.reason, category=r.category, partition=part, offset=off,
                             key=(r.key or b"").decode("utf-8", "replace")[:128])
            sends.append(_dead_letter_out(self.settings, self.dlq, frames_topic, r.key, r.payload, r.reason, r.category,
                                          "classifier", partition=part, offset=off))
        return sends

    def _unpublishable(self, c: Classified, coords: tuple[int, int]) -> Callable[[BaseException], Outgoing | None]:
        def instead(exc: BaseException) -> Outgoing | None:
            reason = f"classification refused by the broker: {exc!r}"
            return _dead_letter_out(self.settings, self.dlq, self.settings.topics.frames, c.key, c.event.to_bytes(), reason,
                                    "unpublishable", "classifier", partition=coords[0], offset=coords[1])
        return instead

    async def finish(self, guard: AckWhenDone, sends: list[Outgoing], ok: list[Classified], bad: list[Rejected],
                     timings: BatchTimings) -> None:
        """Evidence frames, then every record of the batch acknowledged by the broker, then the
        batch's frames acked (``guard``): never the other way round."""
        suspicious = [c for c in ok if c.suspicious]
        if suspicious:
            try:
                async with self.rds.pipeline(transaction=False) as pipe:
                    for c in suspicious:
                        pipe.set(self.keys.evidence_frame(c.event.camera_id, c.event.seq), c.jpeg, ex=self.ttl)
                    await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - evidence is best effort, the alert is not
                self.log.warning("could not keep evidence frames in Redis", error=repr(exc))
        await _send_all(sends, attempts=self.tries)
        guard.__exit__(None, None, None)  # only now: a cancelled or failed batch keeps its references
        if ok:
            for run in timings.runs:
                metrics.BATCH_SIZE.observe(run)
            if timings.runs:
                metrics.INFERENCE_SECONDS.observe(timings.inference_ms / 1000)
            for c in ok:
                metrics.FRAMES_CLASSIFIED.labels(c.event.camera_id).inc()
                if not c.event.inferred:
                    metrics.FRAMES_REUSED.labels(c.event.camera_id).inc()
        self.log.debug("batch", frames=len(ok), reused=timings.reused, rejected=len(bad), decode_ms=round(timings.decode_ms, 1),
                       inference_ms=round(timings.inference_ms, 1))


def _wire_classifier(app: Any, settings: Settings) -> None:
    import redis.asyncio as aioredis

    from processors.classifier import BatchTimings, Classifier
    from processors.inflight import InFlight
    from processors.suppression import SuppressionCache, refresh_suppressions, suppressor_for
    from spillwatch.model import SpillModel

    t = settings.topics
    wid = worker_id()
    model = SpillModel.load(settings.worker.model_path, threads=settings.worker.intra_op_threads, split=settings.worker.inference_split)
    suppressions = SuppressionCache()
    core = Classifier(model, settings, wid, suppressor_for(settings, suppressions, model.map_threshold))
    frames = _raw_topic(app, t.frames)
    rds = aioredis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    clog = get_logger("processors.classifier", worker=wid, model=model.version)
    stage = _ClassifierStage(app, settings, core, rds, clog)
    clog.info("classifier ready", model_path=str(settings.worker.model_path), threads=settings.worker.intra_op_threads,
              split=settings.worker.inference_split,
              gating=settings.gating.enabled, gating_refresh_s=settings.gating.refresh_s)

    @app.agent(frames, name=f"{app.conf.id}.classify")
    async def classify(stream: Any) -> None:
        """Three batches in flight: while batch N's records wait for the broker's acknowledgement,
        batch N+1 is classified in the classifier's thread and batch N+2 is already queued behind it
        (so the thread goes from one batch to the next without waiting for the event loop); N+1 is
        sent only after N is acknowledged, so per-camera order and the hold-on-outage rule stay as
        they were, and a batch's frames are acked only once everything it produced is
        (processors/inflight.py)."""

        async def classified(batch: _Batch) -> tuple[list[Classified], list[Rejected]]:
            return await stage.classify(batch.records, batch.timings)

        async def send(batch: _Batch, result: tuple[list[Classified], list[Rejected]]) -> None:
            ok, bad = result
            await stage.finish(batch.guard, stage.outgoing(ok, bad, batch.coords), ok, bad, batch.timings)

        inflight: InFlight[_Batch, tuple[list[Classified], list[Rejected]]] = InFlight(classified, send, ahead=2)
        try:
            async for events in stream.take_events(settings.worker.batch_size, within=settings.worker.batch_timeout_s):
                guard = AckWhenDone(events).__enter__()  # given back by finish() when the batch is done
                await inflight.submit(_Batch(guard, [(e.message.key, e.message.value) for e in events],
                                                 [(e.message.partition, e.message.offset) for e in events], BatchTimings()))
            await inflight.drain()
        finally:
            inflight.cancel()  # what is still in flight stays un-acked: redelivered to the partitions' next owner

    @app.task
    async def _announce() -> None:
        clog.info("classifier worker started", group=app.conf.id, topic=t.frames)

    if core.suppressor is not None:

        @app.timer(interval=settings.suppression.refresh_s)
        async def _suppressions() -> None:
            await refresh_suppressions(suppressions, rds, stage.keys)


# --------------------------------------------------------------------------- aggregator


def _wire_aggregator(app: Any, settings: Settings) -> None:
    import redis.asyncio as aioredis

    from processors.aggregator import Aggregator, Rejected
    from processors.state_store import StateStore
    from processors.suppression import SuppressionRecorder
    from spillwatch.events import Classification, SpillAlert

    t = settings.topics
    wid = worker_id()
    tries = settings.limits.record_attempts
    threshold, map_threshold = model_thresholds(settings)
    source = _raw_topic(app, t.classifications)
    alerts = _raw_topic(app, t.spill_alerts)
    dlq = _raw_topic(app, t.dead_letter(t.classifications))
    rds = aioredis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    store = StateStore(rds, settings.redis.key_prefix, settings.aggregator.state_ttl_s)
    alog = get_logger("processors.aggregator", worker=wid)

    async def publish(alert: SpillAlert) -> None:
        fut = await alerts.send(key=alert.camera_id.encode(), value=alert.to_bytes())
        await fut

    agg = Aggregator(
        settings, store, publish, model_threshold=threshold, map_threshold=map_threshold,
        evidence_dir=settings.alerting.evidence_dir,
        suppression=SuppressionRecorder(rds, settings.redis.key_prefix, settings.suppression),
    )
    alog.info("aggregator ready", threshold=threshold, map_threshold=map_threshold, cameras=len(agg.known_cameras))

    async def dead_letter(message: Any, reason: str, category: str) -> None:
        alog.warning("classification dead-lettered", reason=reason, category=category, partition=message.partition,
                     offset=message.offset)
        await _send_all([_dead_letter_out(settings, dlq, t.classifications, message.key, message.value, reason, category,
                                          "aggregator", partition=message.partition, offset=message.offset)],
                        attempts=tries)

    async def decide(c: Classification) -> None:
        """Run the state machine; Redis away: hold (never skip a decision); an error of this record
        (a bug, a Redis error reply about its data) ``limits.record_attempts`` times: raise."""
        async for attempt in holding(Attempts(tries, redis_error_is_outage), "classification", camera=c.camera_id, seq=c.seq):
            with attempt:
                await agg.handle(c)

    async def decide_one(msg: Any, c: Classification) -> None:
        try:
            await decide(c)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - this record, not an outage: park it, go on
            alog.exception("classification could not be processed", camera=c.camera_id, seq=c.seq)
            await dead_letter(msg, f"aggregator error after {tries} attempts: {type(exc).__name__}: {exc}", "error")

    async def decide_batch(batch: list[tuple[Any, Classification]]) -> None:
        """The batch in one Redis transaction; Redis away: hold. A fault (not an outage) commits
        nothing of the batch (one transaction), so its records are then decided one by one, each
        with ``limits.record_attempts`` tries and a dead letter: one bad record never blocks the rest."""
        if len(batch) == 1:
            await decide_one(*batch[0])
            return
        try:
            async for attempt in holding(Attempts(1, redis_error_is_outage), "classification batch", records=len(batch)):
                with attempt:
                    await agg.handle_batch([c for _, c in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the record that breaks the batch
            alog.warning("classification batch failed; deciding its records one by one", error=repr(exc), records=len(batch))
            for msg, c in batch:
                await decide_one(msg, c)

    @app.agent(source, name=f"{app.conf.id}.aggregate")
    async def aggregate(stream: Any) -> None:
        """Batches of up to ``aggregator.batch_size`` records (waiting at most ``batch_timeout_s``
        for a batch to fill), acked when all of the batch is decided or dead-lettered."""
        agg_cfg = settings.aggregator
        async for events in stream.take_events(agg_cfg.batch_size, within=agg_cfg.batch_timeout_s):
            with AckWhenDone(events):
                batch: list[tuple[Any, Classification]] = []
                for event in events:
                    msg = event.message
                    c = agg.validate(msg.key, msg.value)
                    if isinstance(c, Rejected):
                        await dead_letter(msg, c.reason, c.category)
                    else:
                        batch.append((msg, c))
                if batch:
                    await decide_batch(batch)

    @app.timer(interval=settings.aggregator.tick_interval_s)
    async def _tick() -> None:
        try:
            await agg.tick()
        except Exception as exc:  # noqa: BLE001 - the next tick retries
            alog.warning("aggregator tick failed", error=repr(exc))
