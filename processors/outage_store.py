"""Redis persistence of the camera monitor: the aggregator's transactional state + outbox
(``processors.state_store.StateStore``) with the monitor's keys and types.

Keys ``P:outage:*`` of spillwatch/redis_keys.py. A camera's :class:`OutageState` never expires (an
open outage must not be forgotten; the cameras are the configured ones, so the keys are bounded);
the "published" markers expire after ``aggregator.state_ttl_s``. Decisions are taken once (an
optimistic transaction per camera writes the new state and its CameraAlerts together), the alerts
are published after the commit and re-published from the outbox after a crash (the incident id and
state are alerting's idempotency key: one page per outage).
"""

from __future__ import annotations

from typing import Any

from processors.camera_outage import OutageState, Step
from processors.state_store import TransactionalStore
from spillwatch.events import CameraAlert, CameraAlertState

_ORDER = {CameraAlertState.OFFLINE: 0, CameraAlertState.STALLED: 0, CameraAlertState.RECOVERED: 1}


class OutageStore(TransactionalStore[OutageState, Step, CameraAlert]):
    state_expires = False

    def state_key(self, camera: str) -> str:
        return self.keys.outage_state(camera)

    @property
    def outbox_key(self) -> str:
        return self.keys.outage_outbox

    @property
    def open_key(self) -> str:
        return self.keys.outage_open

    def sent_key(self, ek: str) -> str:
        return self.keys.outage_sent(ek)

    def claim_key(self, ek: str) -> str:
        return self.keys.outage_claim(ek)

    def new_state(self, camera: str) -> OutageState:
        return OutageState(camera_id=camera)

    def decode_state(self, raw: bytes) -> OutageState:
        return OutageState.from_json(raw)

    def is_open(self, state: OutageState) -> bool:
        return state.outage is not None

    def decode_event(self, raw: bytes) -> CameraAlert:
        return CameraAlert.from_bytes(raw)

    def event_order(self, event: CameraAlert) -> tuple[Any, ...]:
        return (event.event_time, _ORDER[event.state], event.incident_id)

    async def load_many(self, cameras: list[str]) -> dict[str, OutageState]:
        """Every camera's state in one round trip (the timer looks at all of them)."""
        if not cameras:
            return {}
        raws = await self.r.mget([self.state_key(c) for c in cameras])
        return {c: self.decode_state(raw) if raw else self.new_state(c) for c, raw in zip(cameras, raws, strict=True)}
