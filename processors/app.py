"""The Faust app: classifier and aggregator agents wired to Kafka and Redis.

``create_app(settings, role)`` builds one app per role, so each role is its own consumer group and
scales on its own (more ``spillwatch worker`` processes = more classifier members):

- ``classifier`` (group ``<prefix>spillwatch-classifier``) on ``frames``: batches with
  ``stream.take_events(worker.batch_size, within=worker.batch_timeout_s)``, decodes and infers off the
  event loop (ONNX Runtime releases the GIL, heartbeats keep flowing), emits one Classification per
  frame to ``classifications`` keyed by camera id, dead-letters the rest to ``frames.dlq``, and
  keeps suspicious JPEGs in Redis for the evidence snapshot.
- ``aggregator`` (group ``<prefix>spillwatch-aggregator``) on ``classifications``: validates, runs the
  state machine through Redis, publishes SpillAlerts to ``spill-alerts`` keyed by camera id; a timer
  escalates unacknowledged incidents and flushes the alert outbox. The same app hosts the camera
  monitor (processors/camera_monitor.py: ``camera-health`` -> ``camera-alerts``).

At-least-once throughout: a batch's records are acked only after everything it produced has been
acknowledged by the broker, so a killed worker's frames are redone by the member that takes over
(duplicates are dropped downstream by sequence number). No Faust tables (state lives in Redis), so
the local broker's offset bug cannot bite and ``producer_max_batch_size`` stays unlimited.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any, Literal

from spillwatch import metrics
from spillwatch.events import DeadLetter
from spillwatch.kafka import faust_broker_settings
from spillwatch.logs import get_logger
from spillwatch.model_card import ModelError, card_path_for, read_card
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings

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
    return kw


def _raw_topic(app: Any, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


async def _send_all(sends: list[tuple[Any, bytes | None, bytes]]) -> None:
    """Send and wait until the broker has every record (before the batch is acked). While the broker
    is away, retry with backoff and hold the batch: its records stay un-acked, nothing is skipped
    (a retry may duplicate some records; consumers drop duplicates by sequence number)."""
    delay = 0.2
    while True:
        try:
            futs = [await topic.send(key=key, value=value) for topic, key, value in sends]
            if futs:
                await asyncio.gather(*futs)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - KafkaError and friends
            log.warning("send failed; retrying", records=len(sends), error=repr(exc), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _dead_letter(topic: str, key: bytes | None, payload: bytes | None, reason: str, category: str, service: str) -> bytes:
    metrics.DEAD_LETTERS.labels(topic, category).inc()
    return DeadLetter.wrap(
        source_topic=topic, key=key, payload=payload, reason=reason, service=service, category=category
    ).to_bytes()


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
    app = faust.App(**_faust_kwargs(settings, role, web_port))
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


def _wire_classifier(app: Any, settings: Settings) -> None:
    import redis.asyncio as aioredis

    from processors.classifier import BatchTimings, Classifier
    from spillwatch.model import SpillModel

    t = settings.topics
    wid = worker_id()
    model = SpillModel.load(settings.worker.model_path, threads=settings.worker.intra_op_threads)
    core = Classifier(model, settings, wid)
    frames = _raw_topic(app, t.frames)
    out = _raw_topic(app, t.classifications)
    dlq_name = t.dead_letter(t.frames)
    dlq = _raw_topic(app, dlq_name)
    rds = aioredis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    keys, ttl = RedisKeys(settings.redis.key_prefix), settings.aggregator.evidence_frame_ttl_s
    clog = get_logger("processors.classifier", worker=wid, model=model.version)
    clog.info("classifier ready", model_path=str(settings.worker.model_path), threads=settings.worker.intra_op_threads)

    @app.agent(frames, name=f"{app.conf.id}.classify")
    async def classify(stream: Any) -> None:
        async for events in stream.take_events(settings.worker.batch_size, within=settings.worker.batch_timeout_s):
            records = [(e.message.key, e.message.value) for e in events]
            timings = BatchTimings()
            try:
                ok, bad = await asyncio.to_thread(core.process, records, timings)
            except Exception as exc:  # noqa: BLE001 - never lose the batch silently
                clog.exception("batch failed; dead-lettering it", error=repr(exc))
                from processors.classifier import Rejected

                ok, bad = [], [Rejected(k, v, f"classifier error: {exc!r}", "error") for k, v in records]
            sends: list[tuple[Any, bytes | None, bytes]] = [(out, c.key, c.event.to_bytes()) for c in ok]
            for r in bad:
                clog.warning("frame dead-lettered", reason=r.reason, key=(r.key or b"").decode("utf-8", "replace"))
                sends.append((dlq, r.key, _dead_letter(t.frames, r.key, r.payload, r.reason, r.category, "classifier")))
            suspicious = [c for c in ok if c.suspicious]
            if suspicious:
                try:
                    async with rds.pipeline(transaction=False) as pipe:
                        for c in suspicious:
                            pipe.set(keys.evidence_frame(c.event.camera_id, c.event.seq), c.jpeg, ex=ttl)
                        await pipe.execute()
                except Exception as exc:  # noqa: BLE001 - evidence is best effort, the alert is not
                    clog.warning("could not keep evidence frames in Redis", error=repr(exc))
            await _send_all(sends)
            if ok:
                metrics.BATCH_SIZE.observe(len(ok))
                metrics.INFERENCE_SECONDS.observe(timings.inference_ms / 1000)
                for c in ok:
                    metrics.FRAMES_CLASSIFIED.labels(c.event.camera_id).inc()
            clog.debug("batch", frames=len(ok), rejected=len(bad), decode_ms=round(timings.decode_ms, 1),
                       inference_ms=round(timings.inference_ms, 1))

    @app.task
    async def _announce() -> None:
        clog.info("classifier worker started", group=app.conf.id, topic=t.frames)


# --------------------------------------------------------------------------- aggregator


def _wire_aggregator(app: Any, settings: Settings) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from processors.aggregator import Aggregator, Rejected
    from processors.state_store import StateStore
    from spillwatch.events import SpillAlert

    t = settings.topics
    wid = worker_id()
    threshold, map_threshold = model_thresholds(settings)
    source = _raw_topic(app, t.classifications)
    alerts = _raw_topic(app, t.spill_alerts)
    dlq_name = t.dead_letter(t.classifications)
    dlq = _raw_topic(app, dlq_name)
    rds = aioredis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    store = StateStore(rds, settings.redis.key_prefix, settings.aggregator.state_ttl_s)
    alog = get_logger("processors.aggregator", worker=wid)

    async def publish(alert: SpillAlert) -> None:
        fut = await alerts.send(key=alert.camera_id.encode(), value=alert.to_bytes())
        await fut

    agg = Aggregator(
        settings, store, publish, model_threshold=threshold, map_threshold=map_threshold,
        evidence_dir=settings.alerting.evidence_dir,
    )
    alog.info("aggregator ready", threshold=threshold, map_threshold=map_threshold, cameras=len(agg.known_cameras))

    @app.agent(source, name=f"{app.conf.id}.aggregate")
    async def aggregate(stream: Any) -> None:
        async for event in stream.events():
            key, value = event.message.key, event.message.value
            c = agg.validate(key, value)
            if isinstance(c, Rejected):
                alog.warning("classification dead-lettered", reason=c.reason)
                await _send_all([(dlq, key, _dead_letter(t.classifications, key, value, c.reason, c.category, "aggregator"))])
                continue
            delay = 0.2
            while True:  # Redis or the broker away: hold this record (never skip a decision)
                try:
                    await agg.handle(c)
                    break
                except (RedisError, OSError, asyncio.TimeoutError) as exc:
                    alog.warning("aggregator backend unavailable; retrying", error=repr(exc), delay_s=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                except Exception as exc:  # noqa: BLE001 - a record that breaks the aggregator is parked
                    alog.exception("classification could not be processed; dead-lettered", camera=c.camera_id)
                    reason = f"aggregator error: {exc!r}"
                    await _send_all([(dlq, key, _dead_letter(t.classifications, key, value, reason, "error", "aggregator"))])
                    break

    @app.timer(interval=settings.aggregator.tick_interval_s)
    async def _tick() -> None:
        try:
            await agg.tick()
        except Exception as exc:  # noqa: BLE001 - the next tick retries
            alog.warning("aggregator tick failed", error=repr(exc))
