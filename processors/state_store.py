"""Redis persistence of the per-camera incident state, with a transactional alert outbox.

Keys: ``P:agg:*`` and ``P:ack:<incident>`` of spillwatch/redis_keys.py (the shared contract).
The same transactional state + outbox serves the camera monitor (``processors.outage_store``
overrides the key names and the state/event types: the hooks at the top of the class).

Exactly-once *decisions*, at-least-once *publication*:

1. ``apply`` runs an optimistic transaction per camera (WATCH the state key, read, compute the
   transition with the pure state machine, MULTI: write the new state **and** the alerts it
   produced into the outbox, EXEC; retry on a concurrent write). A redelivered classification is a
   duplicate for the state machine and writes nothing, so a decision is taken once.
2. After the commit the alerts are published (``flush``): claim the entry, send it to Kafka and wait
   for the broker's ack, then mark it sent and remove it from the outbox in one MULTI.
3. A crash between 1 and 2 leaves the alert in the outbox; every aggregator flushes the outbox on
   start and on its timer, so the alert is still published. A crash between the send and the mark
   republishes it once: the alert keeps its incident id and state, which is the idempotency key
   of the alerting service (one page per incident per channel).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, Self, TypeVar

from redis.exceptions import WatchError

from processors.confirmation import CameraState, Phase, StepResult
from spillwatch.events import AlertState, SpillAlert
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys

log = get_logger("processors.state_store")

_STATE_ORDER = {AlertState.CONFIRMED: 0, AlertState.ESCALATED: 1, AlertState.CLEARED: 2}


class StoredEvent(Protocol):
    """What the outbox needs of an event (SpillAlert, CameraAlert)."""

    @property
    def incident_id(self) -> str: ...
    @property
    def state(self) -> Any: ...  # an enum: ``.value`` names the transition
    def to_bytes(self) -> bytes: ...


class StoredState(Protocol):
    def to_json(self) -> str | bytes: ...


class StoredStep(Protocol):
    """What ``apply`` needs of a transition's result (StepResult, camera_outage.Step)."""

    @property
    def state(self) -> Any: ...
    @property
    def alerts(self) -> Sequence[Any]: ...
    @property
    def duplicate(self) -> bool: ...
    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self: ...


S = TypeVar("S", bound=StoredState)
R = TypeVar("R", bound=StoredStep)
E = TypeVar("E", bound=StoredEvent)


def event_key(alert: StoredEvent) -> str:
    """Outbox/dedupe key of an alert: one confirmed, escalated and cleared event per incident."""
    return f"{alert.incident_id}:{alert.state.value}"


Prepare = Callable[[StepResult], Awaitable[list[SpillAlert]]]
Publish = Callable[[SpillAlert], Awaitable[None]]


class TransactionalStore(ABC, Generic[S, R, E]):
    """Per-camera state ``S`` in Redis (``redis.asyncio`` client, ``decode_responses=False``) changed
    by transitions returning ``R``, whose events ``E`` go through the outbox. Subclasses name the
    keys and the types (the hooks)."""

    state_expires = True  # the per-camera state expires ``ttl_s`` after its last write

    def __init__(self, redis: Any, key_prefix: str, ttl_s: int, *, claim_lease_s: float = 30.0) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)
        self.ttl_s = int(ttl_s)
        self.claim_lease_ms = int(claim_lease_s * 1000)

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def state_key(self, camera: str) -> str: ...

    @property
    @abstractmethod
    def outbox_key(self) -> str: ...

    @property
    @abstractmethod
    def open_key(self) -> str: ...

    @abstractmethod
    def sent_key(self, ek: str) -> str: ...

    @abstractmethod
    def claim_key(self, ek: str) -> str: ...

    @abstractmethod
    def new_state(self, camera: str) -> S: ...

    @abstractmethod
    def decode_state(self, raw: bytes) -> S: ...

    @abstractmethod
    def is_open(self, state: S) -> bool: ...

    @abstractmethod
    def decode_event(self, raw: bytes) -> E: ...

    @abstractmethod
    def event_order(self, event: E) -> tuple[Any, ...]: ...

    # ------------------------------------------------------------------ state
    async def load(self, camera: str) -> S:
        raw = await self.r.get(self.state_key(camera))
        return self.decode_state(raw) if raw else self.new_state(camera)

    async def apply(
        self, camera: str, transition: Callable[[S], R], prepare: Callable[[R], Awaitable[list[E]]] | None = None
    ) -> R:
        """Atomically load -> ``transition`` -> save the camera's state, putting the resulting alerts
        in the outbox in the same transaction. ``prepare`` (optional) may enrich the alerts before
        the commit (e.g. the evidence snapshot); it must be idempotent (it can run again on a retry).
        Returns the step result with the alerts as committed."""
        return (await self.apply_batch([(camera, transition, prepare)]))[0]

    async def apply_batch(
        self, steps: Sequence[tuple[str, Callable[[S], R], Callable[[R], Awaitable[list[E]]] | None]]
    ) -> list[R]:
        """``apply`` for several steps (camera, transition, prepare) in one optimistic transaction:
        WATCH every camera's key, read them in one MGET, run the transitions in order (a camera's
        second step sees its first step's state), then one MULTI with every new state and every
        alert. Three round trips for the batch instead of three a step; the decisions, the outbox
        and the retry on a concurrent write are those of ``apply`` (a retry runs the whole batch
        again from the stored states, so ``prepare`` must be idempotent, as for ``apply``).
        Returns the step results in order, with the alerts as committed."""
        if not steps:
            return []
        cameras = list(dict.fromkeys(camera for camera, _, _ in steps))
        keys = [self.state_key(c) for c in cameras]
        for attempt in range(50):
            async with self.r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*keys)
                    raws = await pipe.mget(keys)
                    missing = [k for k, raw in zip(keys, raws, strict=True) if raw is None]
                    if missing and await pipe.exists(*missing):
                        # MGET reads a key of another type as missing; GET raises its WRONGTYPE, as
                        # in apply (a state key something else wrote is never overwritten)
                        for k in missing:
                            await pipe.get(k)
                    states = {c: (self.decode_state(raw) if raw else self.new_state(c)) for c, raw in zip(cameras, raws, strict=True)}
                    changed: set[str] = set()
                    results: list[R] = []
                    outbox: list[E] = []
                    for camera, transition, prepare in steps:
                        result = transition(states[camera])
                        if result.duplicate:  # as in apply: nothing of a duplicate is written
                            results.append(result)
                            continue
                        alerts = await prepare(result) if (prepare and result.alerts) else list(result.alerts)
                        states[camera] = result.state
                        changed.add(camera)
                        outbox += alerts
                        results.append(result.model_copy(update={"alerts": alerts}))
                    if not changed:
                        await pipe.unwatch()
                        return results
                    pipe.multi()
                    for camera in cameras:
                        if camera not in changed:
                            continue
                        state = states[camera]
                        pipe.set(self.state_key(camera), state.to_json(), ex=self.ttl_s if self.state_expires else None)
                        if self.is_open(state):
                            pipe.sadd(self.open_key, camera)
                        else:
                            pipe.srem(self.open_key, camera)
                    for a in outbox:
                        pipe.hset(self.outbox_key, event_key(a), a.to_bytes())
                    await pipe.execute()
                    return results
                except WatchError:
                    await asyncio.sleep(0.001 * attempt)
                    continue
        raise RuntimeError(f"state of cameras {cameras[:5]} kept changing under 50 transaction attempts")

    async def open_cameras(self) -> list[str]:
        return sorted(m.decode() if isinstance(m, bytes) else m for m in await self.r.smembers(self.open_key))

    async def is_acknowledged(self, incident_id: str) -> bool:
        return bool(await self.r.exists(self.keys.ack(incident_id)))

    # ------------------------------------------------------------------ outbox
    async def pending(self) -> list[E]:
        """Alerts committed but not yet published, oldest first (confirmed before escalated before
        cleared within an incident)."""
        raw = await self.r.hgetall(self.outbox_key)
        return sorted((self.decode_event(v) for v in raw.values()), key=self.event_order)

    async def flush(self, publish: Callable[[E], Awaitable[None]], alerts: Sequence[E] | None = None) -> list[E]:
        """Publish outbox entries (``alerts``, or all pending) that nobody else is publishing and
        that were not published before; returns the ones this call published. ``publish`` must
        return only once the broker has the record."""
        todo = alerts if alerts is not None else await self.pending()
        done: list[E] = []
        for alert in todo:
            ek = event_key(alert)
            if await self.r.exists(self.sent_key(ek)):
                await self.r.hdel(self.outbox_key, ek)  # published before a crash; just tidy up
                continue
            if not await self.r.set(self.claim_key(ek), b"1", nx=True, px=self.claim_lease_ms):
                continue  # another aggregator is publishing it right now
            if not await self.r.hexists(self.outbox_key, ek):
                await self.r.delete(self.claim_key(ek))  # someone finished it meanwhile
                continue
            try:
                await publish(alert)
            except Exception:
                await self.r.delete(self.claim_key(ek))
                raise
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.set(self.sent_key(ek), b"1", ex=self.ttl_s)
                pipe.hdel(self.outbox_key, ek)
                pipe.delete(self.claim_key(ek))
                await pipe.execute()
            done.append(alert)
        return done


class StateStore(TransactionalStore[CameraState, StepResult, SpillAlert]):
    """The aggregator's incident state (keys ``P:agg:*``)."""

    def state_key(self, camera: str) -> str:
        return self.keys.agg_state(camera)

    @property
    def outbox_key(self) -> str:
        return self.keys.agg_outbox

    @property
    def open_key(self) -> str:
        return self.keys.agg_open

    def sent_key(self, ek: str) -> str:
        return self.keys.agg_sent(ek)

    def claim_key(self, ek: str) -> str:
        return self.keys.agg_claim(ek)

    def new_state(self, camera: str) -> CameraState:
        return CameraState(camera_id=camera)

    def decode_state(self, raw: bytes) -> CameraState:
        return CameraState.from_json(raw)

    def is_open(self, state: CameraState) -> bool:
        return state.phase == Phase.CONFIRMED

    def decode_event(self, raw: bytes) -> SpillAlert:
        return SpillAlert.from_bytes(raw)

    def event_order(self, event: SpillAlert) -> tuple[Any, ...]:
        return (event.event_time, _STATE_ORDER[event.state], event.incident_id)
