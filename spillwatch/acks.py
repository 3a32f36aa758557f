"""Acknowledgements of incidents, stored in Redis (a CONTRACT shared by alerting, the console and
``spillwatch ack``).

Key: ``RedisKeys.ack`` (spillwatch/redis_keys.py, ``P:ack:<incident id>``) — a hash with ``incident_id``, ``by``, ``at`` (ISO-8601
UTC), ``note`` and optionally ``label`` (``"true"``: it was a real spill, ``"false"``: false alarm).
Writers: ``spillwatch ack`` (alerting/commands.py) and the console (console/, acknowledge button and
``POST /api/incidents/{id}/ack``). Readers: alerting and the aggregator (no escalation once
acknowledged), the archiver (labels), the console.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spillwatch.events import UtcDatetime, utcnow
from spillwatch.redis_keys import RedisKeys

Label = Literal["true", "false"]


class AckRequest(BaseModel):
    """An acknowledgement as ``spillwatch ack`` and the console give it."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="unknown", min_length=1, max_length=200)
    note: str = Field(default="", max_length=2000)
    label: Label | None = None

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return v.strip().lower() or None
        return v


class Ack(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    by: str
    at: UtcDatetime
    note: str = ""
    label: Label | None = None


class AckStore:
    def __init__(self, redis: Any, key_prefix: str, ttl_s: int, on_ack: Any = None) -> None:
        self._r = redis
        self._keys = RedisKeys(key_prefix)
        self._ttl = ttl_s
        self._on_ack = on_ack  # callable(incident_id) run after storing (cancels escalation)

    def ack(self, incident_id: str, req: AckRequest, at: datetime | None = None) -> Ack:
        ack = Ack(incident_id=incident_id, by=req.by, at=at or utcnow(), note=req.note, label=req.label)
        key = self._keys.ack(incident_id)
        fields = {"incident_id": incident_id, "by": ack.by, "at": ack.at.isoformat(), "note": ack.note}
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=fields | ({"label": ack.label} if ack.label else {}))
        pipe.expire(key, self._ttl)
        pipe.execute()
        if self._on_ack is not None:
            self._on_ack(incident_id)
        return ack

    def get(self, incident_id: str) -> Ack | None:
        raw = self._r.hgetall(self._keys.ack(incident_id))
        if not raw:
            return None
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
        return Ack.model_validate(d)

    def is_acked(self, incident_id: str) -> bool:
        return bool(self._r.exists(self._keys.ack(incident_id)))
