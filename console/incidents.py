"""The console's incident index in Redis (``P:console:*`` of spillwatch/redis_keys.py), built from
the ``spill-alerts`` topic.

Every console instance reads the whole topic (low volume: a few records per incident) and upserts
here; an alert already recorded changes nothing, and an incident's state only moves forward
(confirmed -> escalated -> cleared; a late ``confirmed`` never reopens a cleared incident), so
replays, restarts and several instances agree. The index adds what the console itself learns:
the operator's verdict (spill / false alarm), the spill map of the confirming frame and the score
timeline around the confirmation. Pages and acknowledgements stay where alerting keeps them and
are joined at read time (console/data.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from redis.exceptions import WatchError

from spillwatch.events import AlertState, Evidence, SpillAlert
from spillwatch.redis_keys import RedisKeys

Change = Literal["opened", "escalated", "cleared", "updated"]
SCAN_MAX = 5000  # incidents examined for one filtered listing (newest first)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def merge_alert(cur: Mapping[str, str], alert: SpillAlert) -> tuple[dict[str, str], Change | None]:
    """The hash fields to write for ``alert`` given the incident's current fields, and what changed
    (None: this alert state was recorded before). Pure."""
    state = alert.state.value
    if f"alert:{state}" in cur:
        return {}, None
    fields: dict[str, str] = {f"alert:{state}": alert.model_dump_json(), "camera_id": alert.camera_id}
    first_seen = alert.first_seen.isoformat()
    if not cur.get("first_seen") or first_seen < cur["first_seen"]:
        fields["first_seen"] = first_seen
    if not cur.get("confirmed_at") or alert.state == AlertState.CONFIRMED:
        fields["confirmed_at"] = alert.confirmed_at.isoformat()
    if alert.model_version and (not cur.get("model_version") or alert.state == AlertState.CONFIRMED):
        fields["model_version"] = alert.model_version
    if alert.zone and not cur.get("zone"):
        fields["zone"] = alert.zone
    old = cur.get("state")
    if alert.state == AlertState.CLEARED:
        new = AlertState.CLEARED.value
        if alert.cleared_at is not None:
            fields["cleared_at"] = alert.cleared_at.isoformat()
    elif alert.state == AlertState.ESCALATED:
        fields["escalated"] = "1"
        new = old if old == AlertState.CLEARED.value else AlertState.ESCALATED.value
    else:
        new = old or AlertState.CONFIRMED.value
    fields["state"] = new
    change: Change
    if not cur:
        change = "cleared" if new == AlertState.CLEARED.value else "opened"
    elif new == AlertState.CLEARED.value and old != new:
        change = "cleared"
    elif alert.state == AlertState.ESCALATED and old != AlertState.CLEARED.value:
        change = "escalated"
    else:
        change = "updated"
    return fields, change


@dataclass
class IncidentRecord:
    """One incident as the index holds it."""

    incident_id: str
    camera_id: str
    state: str
    first_seen: datetime
    confirmed_at: datetime
    cleared_at: datetime | None = None
    escalated: bool = False
    model_version: str = ""
    zone: str | None = None
    alerts: dict[str, SpillAlert] = field(default_factory=dict)
    verdict: str | None = None
    verdict_by: str | None = None
    verdict_at: datetime | None = None
    spill_map: list[list[int]] | None = None

    @property
    def open(self) -> bool:
        return self.state != AlertState.CLEARED.value

    @property
    def evidence(self) -> Evidence:
        for state in ("confirmed", "escalated", "cleared"):
            if state in self.alerts:
                return self.alerts[state].evidence
        return Evidence()

    @classmethod
    def from_hash(cls, incident_id: str, raw: Mapping[str, str]) -> IncidentRecord:
        alerts = {k.split(":", 1)[1]: SpillAlert.from_bytes(v) for k, v in raw.items() if k.startswith("alert:")}
        spill_map = json.loads(raw["spill_map"]) if raw.get("spill_map") else None
        return cls(
            incident_id=incident_id,
            camera_id=raw.get("camera_id", ""),
            state=raw.get("state", AlertState.CONFIRMED.value),
            first_seen=datetime.fromisoformat(raw["first_seen"]),
            confirmed_at=datetime.fromisoformat(raw["confirmed_at"]),
            cleared_at=datetime.fromisoformat(raw["cleared_at"]) if raw.get("cleared_at") else None,
            escalated=raw.get("escalated") == "1",
            model_version=raw.get("model_version", ""),
            zone=raw.get("zone") or None,
            alerts=alerts,
            verdict=raw.get("verdict") or None,
            verdict_by=raw.get("verdict_by") or None,
            verdict_at=datetime.fromisoformat(raw["verdict_at"]) if raw.get("verdict_at") else None,
            spill_map=spill_map,
        )


def open_first(open_ids: Iterable[str], all_ids: Iterable[str]) -> list[str]:
    """Open incidents first (as given: newest first), then every other one (as given). Pure."""
    first = list(dict.fromkeys(open_ids))
    seen = set(first)
    return first + [i for i in all_ids if i not in seen]


class IncidentIndex:
    def __init__(self, redis: Any, key_prefix: str, retention_s: float) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)
        self.retention_s = int(retention_s)

    def ingest(self, alert: SpillAlert) -> Change | None:
        """Record one alert (idempotent); returns what changed, None when nothing did."""
        key = self.keys.console_incident(alert.incident_id)
        score = alert.confirmed_at.timestamp()
        for _ in range(50):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    cur = {_s(k): _s(v) for k, v in pipe.hgetall(key).items()}
                    fields, change = merge_alert(cur, alert)
                    if change is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.hset(key, mapping=fields)
                    pipe.expire(key, self.retention_s)
                    pipe.zadd(self.keys.console_incidents, {alert.incident_id: score})
                    pipe.zadd(self.keys.console_camera_incidents(alert.camera_id), {alert.incident_id: score})
                    if fields["state"] == AlertState.CLEARED.value:
                        pipe.zrem(self.keys.console_open, alert.incident_id)
                    else:
                        pipe.zadd(self.keys.console_open, {alert.incident_id: score})
                    pipe.execute()
                    return change
                except WatchError:
                    continue
        raise RuntimeError(f"incident {alert.incident_id} kept changing under 50 attempts")

    def get(self, incident_id: str) -> IncidentRecord | None:
        raw = {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.console_incident(incident_id)).items()}
        if not raw.get("confirmed_at"):
            return None
        return IncidentRecord.from_hash(incident_id, raw)

    def get_many(self, ids: list[str]) -> list[IncidentRecord]:
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.console_incident(i))
        out = []
        for i, raw in zip(ids, pipe.execute(), strict=True):
            d = {_s(k): _s(v) for k, v in raw.items()}
            if d.get("confirmed_at"):
                out.append(IncidentRecord.from_hash(i, d))
        return out

    def open_ids(self, camera: str | None = None) -> list[str]:
        ids = [_s(i) for i in self.r.zrevrange(self.keys.console_open, 0, -1)]
        if camera is None:
            return ids
        return [r.incident_id for r in self.get_many(ids) if r.camera_id == camera]

    def ordered_ids(self, camera: str | None, since: datetime | None, until: datetime | None) -> list[str]:
        """Incident ids, open first, each group newest first (at most SCAN_MAX)."""
        hi = until.timestamp() if until else "+inf"
        lo = since.timestamp() if since else "-inf"
        zkey = self.keys.console_camera_incidents(camera) if camera else self.keys.console_incidents
        all_ids = [_s(i) for i in self.r.zrevrangebyscore(zkey, hi, lo, start=0, num=SCAN_MAX)]
        opened = {_s(i) for i in self.r.zrevrangebyscore(self.keys.console_open, hi, lo)}
        return open_first([i for i in all_ids if i in opened], all_ids)

    def set_verdict(self, incident_id: str, label: str, by: str, at: datetime) -> None:
        self.r.hset(self.keys.console_incident(incident_id), mapping={"verdict": label, "verdict_by": by, "verdict_at": at.isoformat()})

    def set_spill_map(self, incident_id: str, spill_map: list[list[int]]) -> None:
        self.r.hsetnx(self.keys.console_incident(incident_id), "spill_map", json.dumps(spill_map, separators=(",", ":")))

    def add_timeline(self, incident_id: str, samples: Iterable[tuple[int, float, float]]) -> None:
        """Score samples ``(seq, capture unix s, probability)``; the same sample twice is stored once."""
        members = {json.dumps([seq, round(t, 3), round(p, 4)], separators=(",", ":")): seq for seq, t, p in samples}
        if not members:
            return
        key = self.keys.console_timeline(incident_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, members)
        pipe.expire(key, self.retention_s)
        pipe.execute()

    def timeline(self, incident_id: str) -> list[tuple[int, float, float]]:
        out = []
        for m in self.r.zrange(self.keys.console_timeline(incident_id), 0, -1):
            seq, t, p = json.loads(_s(m))
            out.append((int(seq), float(t), float(p)))
        return out

    def prune(self, now: float) -> int:
        """Drop index entries older than the retention (their hashes expire by TTL)."""
        cutoff = now - self.retention_s
        n = int(self.r.zremrangebyscore(self.keys.console_incidents, "-inf", cutoff))
        self.r.zremrangebyscore(self.keys.console_open, "-inf", cutoff)
        for key in self.r.scan_iter(match=self.keys.console_camera_incidents("*"), count=500):
            self.r.zremrangebyscore(key, "-inf", cutoff)
        return n
