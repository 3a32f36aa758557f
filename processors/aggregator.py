"""Aggregator core: classifications in, spill alerts out, state in Redis (no Kafka here).

For each classification: validate (larger than ``limits.event_bytes``, checked before parsing;
malformed; unknown schema version; unknown camera when cameras are configured; capture time more
than ``limits.capture_ahead_s`` ahead of this clock -> :class:`Rejected`), run the camera's state machine inside the Redis transaction
of :class:`~processors.state_store.StateStore`, write the evidence snapshot for a confirmation,
then publish the committed alerts (outbox). ``tick`` is the timer: escalation of open incidents
(acknowledgements read from alerting's keys) and a flush of anything left in the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from processors.confirmation import CameraState, ConfirmParams, StepResult, observe, params_for, tick
from processors.evidence import render_snapshot, write_snapshot
from processors.state_store import Prepare, Publish, StateStore
from processors.suppression import SuppressionRecorder
from spillwatch import metrics
from spillwatch.events import AlertState, Classification, EventError, SpillAlert, capture_ahead, utcnow
from spillwatch.logs import get_logger
from spillwatch.settings import Settings

log = get_logger("processors.aggregator")


@dataclass(frozen=True)
class Rejected:
    key: bytes | None
    payload: bytes | None
    reason: str
    category: str


class Aggregator:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        publish: Publish,
        *,
        model_threshold: float,
        map_threshold: float = 0.5,
        evidence_dir: Path | None = None,
        suppression: SuppressionRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.suppression = suppression
        self.store = store
        self.publish = publish
        self.model_threshold = model_threshold
        self.map_threshold = map_threshold
        self.evidence_dir = evidence_dir if evidence_dir is not None else settings.alerting.evidence_dir
        self.known_cameras = {c.id for c in settings.cameras if c.enabled}
        self._params: dict[str, ConfirmParams] = {}

    def params(self, camera: str) -> ConfirmParams:
        p = self._params.get(camera)
        if p is None:
            p = params_for(self.settings, camera, model_threshold=self.model_threshold, map_threshold=self.map_threshold)
            self._params[camera] = p
        return p

    # ------------------------------------------------------------------ validation
    def validate(self, key: bytes | None, value: bytes | None, now: datetime | None = None) -> Classification | Rejected:
        if not value:
            return Rejected(key, value, "empty record", "empty")
        limit = self.settings.limits.event_bytes
        if len(value) > limit:
            return Rejected(key, value, f"classification too large: {len(value)} bytes > limit {limit}", "too_large")
        try:
            c = Classification.from_bytes(value)
        except EventError as exc:
            reason = str(exc)
            cat = "unknown_version" if reason.startswith("invalid Classification: v:") else "malformed"
            return Rejected(key, value, reason, cat)
        if self.known_cameras and c.camera_id not in self.known_cameras:
            return Rejected(key, value, f"unknown camera {c.camera_id!r} (not in the configured cameras)", "unknown_camera")
        ahead = capture_ahead(c.capture_time, now or utcnow(), self.settings.limits.capture_ahead_s)
        if ahead is not None:
            return Rejected(key, value, ahead, "clock_skew")
        return c

    # ------------------------------------------------------------------ processing
    async def handle(self, c: Classification, now: datetime | None = None) -> StepResult:
        """Process one classification; alerts are committed, then published before returning."""
        return (await self.handle_batch([c], now))[0]

    async def handle_batch(self, cs: list[Classification], now: datetime | None = None) -> list[StepResult]:
        """``handle`` for a batch of classifications (of any cameras, in stream order) in one Redis
        transaction (``StateStore.apply_batch``): the same decisions, outbox and pages as handling
        them one by one, a third of the round trips."""
        at = now or utcnow()

        def step(c: Classification) -> tuple[str, Callable[[CameraState], StepResult], Prepare]:
            params = self.params(c.camera_id)

            async def prepare(result: StepResult) -> list[SpillAlert]:
                return [await self._with_snapshot(a, c, params) if a.state == AlertState.CONFIRMED else a for a in result.alerts]

            return c.camera_id, lambda st: observe(st, c, params, at), prepare

        results = await self.store.apply_batch([step(c) for c in cs])
        alerts: list[SpillAlert] = []
        for c, result in zip(cs, results, strict=True):
            if result.duplicate:
                metrics.DUPLICATES_SKIPPED.labels("aggregator").inc()
                if result.admission.value != "duplicate":
                    log.info("classification not taken", camera=c.camera_id, seq=c.seq, epoch=c.epoch, admission=result.admission.value)
                continue
            if self.suppression is not None:
                await self.suppression.after(c, result)
            if result.alerts:
                self._count(result)
                alerts += result.alerts
        if alerts:
            try:
                await self.store.flush(self.publish, alerts)
            except Exception as exc:  # noqa: BLE001 - committed: the outbox keeps them, the timer retries
                log.warning("alert publish failed; kept in the outbox", alerts=len(alerts), error=repr(exc))
        return results

    async def tick(self, now: datetime | None = None) -> list[SpillAlert]:
        """Escalate open incidents that are due (unless acknowledged) and flush the outbox."""
        at = now or utcnow()
        for camera in await self.store.open_cameras():
            params = self.params(camera)
            state = await self.store.load(camera)
            inc = state.open_incident
            if inc is None:
                continue
            acked = inc.acknowledged or await self.store.is_acknowledged(inc.id)
            if acked == inc.acknowledged and (inc.escalated or (at - inc.confirmed_wall).total_seconds() < params.escalate_after_s):
                continue  # nothing to change: avoid a write per tick
            result = await self.store.apply(camera, lambda st: tick(st, params, at, acknowledged=acked))  # noqa: B023 - awaited here
            self._count(result)
        return await self.store.flush(self.publish)

    def _count(self, result: StepResult) -> None:
        for a in result.alerts:
            metrics.INCIDENTS.labels(a.camera_id, a.state.value).inc()
            log.info(
                "incident " + a.state.value,
                camera=a.camera_id,
                incident=a.incident_id,
                confirming_seq=a.evidence.confirming_seq,
                snapshot=a.evidence.snapshot_ref,
            )
        metrics.INCIDENTS_OPEN.labels(result.state.camera_id).set(1 if result.state.open_incident else 0)

    async def _with_snapshot(self, alert: SpillAlert, c: Classification, params: ConfirmParams) -> SpillAlert:
        if alert.evidence.snapshot_ref:
            return alert
        try:
            jpeg = await self.store.r.get(self.store.keys.evidence_frame(c.camera_id, c.seq))
            if not jpeg:
                log.warning("no frame for the evidence snapshot", camera=c.camera_id, seq=c.seq, incident=alert.incident_id)
                return alert
            label = f"{alert.incident_id} p={c.spill_prob:.2f} {c.capture_time:%Y-%m-%d %H:%M:%S}Z"
            path = await asyncio.to_thread(self._write, jpeg, alert.incident_id, c, params, label)
        except Exception as exc:  # noqa: BLE001 - a snapshot failure must never cost the alert
            log.warning("evidence snapshot failed", incident=alert.incident_id, error=repr(exc))
            return alert
        evidence = alert.evidence.model_copy(update={"snapshot_ref": str(path)})
        return alert.model_copy(update={"evidence": evidence})

    def _write(self, jpeg: bytes, incident: str, c: Classification, params: ConfirmParams, label: str) -> Path:
        data = render_snapshot(jpeg, c.region, params.zone, c.spill_map, params.map_threshold, label)
        return write_snapshot(Path(self.evidence_dir), incident, data)
