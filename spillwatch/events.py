"""Versioned wire events. Every stage validates what it reads and writes with these models.

JSON for everything but frames; frames travel as a small binary envelope (no pickle):

    b"SWF1" | uint32 big-endian header length | header JSON (FrameHeader) | JPEG bytes

Times are timezone-aware UTC; ``capture_time`` is stamped by the producer at capture, never by a
later stage.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
FRAME_MAGIC = b"SWF1"
MAX_FRAME_HEADER_BYTES = 16 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (UTC)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class EventError(ValueError):
    """A record that is not a valid event of the expected kind (malformed, unknown version, ...)."""


class Event(BaseModel):
    """Base of all wire events: strict about unknown versions, tolerant of extra fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Any:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise EventError(f"invalid {cls.__name__}: {_short(exc)}") from exc


def _short(exc: ValidationError) -> str:
    errs = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errs[:3]]
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "; ".join(parts) + more


# --------------------------------------------------------------------------- frames


class FrameHeader(Event):
    """Metadata of one sampled camera frame."""

    camera_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0, description="per-camera sequence number, increasing")
    capture_time: UtcDatetime
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    encoding: Literal["jpeg"] = "jpeg"
    producer: str = ""
    source_uri: str = ""
    # Ground-truth / replay context travels with the frame when known (replay, synthetic clips).
    label: Literal["spill", "clean"] | None = None


class Frame(BaseModel):
    """A decoded envelope: header plus the still-encoded JPEG."""

    model_config = ConfigDict(frozen=True)

    header: FrameHeader
    jpeg: bytes


def encode_frame(header: FrameHeader, jpeg: bytes) -> bytes:
    head = header.to_bytes()
    return FRAME_MAGIC + struct.pack(">I", len(head)) + head + jpeg


def decode_frame(data: bytes, *, max_bytes: int | None = None) -> Frame:
    """Parse a frame envelope; raises EventError with a reason a dead letter can carry."""
    if max_bytes is not None and len(data) > max_bytes:
        raise EventError(f"frame too large: {len(data)} bytes > limit {max_bytes}")
    if len(data) < 8 or data[:4] != FRAME_MAGIC:
        raise EventError("not a SpillWatch frame envelope (bad magic)")
    (n,) = struct.unpack(">I", data[4:8])
    if n > MAX_FRAME_HEADER_BYTES or 8 + n > len(data):
        raise EventError(f"frame header length {n} out of range")
    header = FrameHeader.from_bytes(data[8 : 8 + n])
    jpeg = data[8 + n :]
    if not jpeg:
        raise EventError("frame has no image payload")
    return Frame(header=header, jpeg=jpeg)


# --------------------------------------------------------------------------- classifications


class Region(BaseModel):
    """Where the spill is, in normalised image coordinates (0..1)."""

    model_config = ConfigDict(frozen=True)

    x0: float = Field(ge=0, le=1)
    y0: float = Field(ge=0, le=1)
    x1: float = Field(ge=0, le=1)
    y1: float = Field(ge=0, le=1)
    area: float = Field(ge=0, le=1, default=0.0, description="fraction of the image flagged as spill")


class Classification(Event):
    camera_id: str = Field(min_length=1)
    seq: int = Field(ge=0)
    capture_time: UtcDatetime
    spill_prob: float = Field(ge=0, le=1)
    # Coarse spill map: grid rows of per-cell probabilities quantised to 0..255 (row-major).
    spill_map: list[list[int]] | None = None
    region: Region | None = None
    model_version: str
    worker: str = ""
    inference_ms: float = Field(ge=0, default=0.0)
    classified_at: UtcDatetime = Field(default_factory=utcnow)
    label: Literal["spill", "clean"] | None = None


# --------------------------------------------------------------------------- alerts


class AlertState(StrEnum):
    CONFIRMED = "confirmed"
    ESCALATED = "escalated"
    CLEARED = "cleared"


# Ids that travel into Redis keys, job ids, file names and URLs: a strict alphabet, no separators
# of those ("/", "|", whitespace), no leading dot. Camera ids follow the camera settings' rule.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
MAX_ID_LENGTH = 200
CAMERA_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
# Alert times outside this range are garbage (year 0001, 9999), not incidents.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
MAX_EVIDENCE_ITEMS = 1000


def _plausible_time(value: datetime) -> datetime:
    value = _as_utc(value)
    if not MIN_EVENT_TIME <= value < MAX_EVENT_TIME:
        raise ValueError(f"time {value.isoformat()} is outside {MIN_EVENT_TIME.year}..{MAX_EVENT_TIME.year - 1}")
    return value


AlertTime = Annotated[datetime, AfterValidator(_plausible_time)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Evidence(BaseModel):
    """Why an incident was confirmed. Finite numbers only (NaN/inf are rejected), probabilities in 0..1."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    scores: list[Probability] = Field(
        default_factory=list, max_length=MAX_EVIDENCE_ITEMS, description="window of spill probabilities"
    )
    frame_seqs: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=MAX_EVIDENCE_ITEMS)
    peak_prob: Probability = 0.0
    confirming_seq: int | None = Field(default=None, ge=0)
    region: Region | None = None
    snapshot_ref: str | None = Field(
        default=None, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*$", description="path/URL of the evidence snapshot"
    )


class SpillAlert(Event):
    """One incident transition. Validation rejects anything a real aggregator cannot produce:
    ids outside the strict alphabet, non-finite or out-of-range numbers, times outside
    2000..2099, times out of order, ``cleared_at`` on a state other than ``cleared`` (and missing
    on ``cleared``). Whether the transition makes sense for the incident is alerting's check
    (``alerting.transitions``)."""

    model_config = ConfigDict(allow_inf_nan=False)

    incident_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    camera_id: str = Field(min_length=1, max_length=128, pattern=CAMERA_ID_PATTERN)
    state: AlertState
    first_seen: AlertTime = Field(description="capture time of the first suspicious frame")
    confirmed_at: AlertTime = Field(description="capture time of the confirming frame")
    cleared_at: AlertTime | None = None
    event_time: AlertTime = Field(default_factory=utcnow, description="when this event was emitted")
    evidence: Evidence = Field(default_factory=Evidence)
    model_version: str = Field(default="", max_length=200)
    zone: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> "SpillAlert":
        if self.confirmed_at < self.first_seen:
            raise ValueError("confirmed_at is before first_seen")
        if self.state == AlertState.CLEARED:
            if self.cleared_at is None:
                raise ValueError("a cleared alert needs cleared_at")
            if self.cleared_at < self.confirmed_at:
                raise ValueError("cleared_at is before confirmed_at")
        elif self.cleared_at is not None:
            raise ValueError(f"cleared_at is set on a {self.state.value} alert")
        return self


# --------------------------------------------------------------------------- health


class CameraState(StrEnum):
    ONLINE = "online"
    STALLED = "stalled"
    OFFLINE = "offline"


class CameraHealth(Event):
    camera_id: str
    state: CameraState
    fps: float = 0.0
    last_frame_time: UtcDatetime | None = None
    frames_published: int = 0
    error: str | None = None
    at: UtcDatetime = Field(default_factory=utcnow)
    producer: str = ""


class CameraAlertState(StrEnum):
    """A camera outage's events: it opens ``offline`` or ``stalled`` (one page), ends ``recovered``."""

    OFFLINE = "offline"
    STALLED = "stalled"
    RECOVERED = "recovered"


MAX_REASON_LENGTH = 500
# Reasons travel into pages (Slack, e-mail, PagerDuty): printable text on one line.
_REASON_PATTERN = r"^[^\x00-\x1f\x7f]*$"


class CameraAlert(Event):
    """One camera-outage transition (topic ``camera-alerts``, produced by the camera monitor,
    processors/camera_outage.py). An outage opens once (``offline`` or ``stalled``, after the grace
    period) and closes once (``recovered``, after frames flowed steadily for the recovery period).

    Validation rejects what a real monitor cannot produce, like :class:`SpillAlert`'s: ids outside
    the strict alphabets, times outside 2000..2099 or out of order, ``recovered_at`` on a state
    other than ``recovered`` (and missing on ``recovered``), control characters in the reason,
    non-finite numbers. Whether the transition makes sense for the outage is alerting's check
    (``alerting.transitions.check_camera_transition``)."""

    model_config = ConfigDict(allow_inf_nan=False)

    incident_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    camera_id: str = Field(min_length=1, max_length=128, pattern=CAMERA_ID_PATTERN)
    state: CameraAlertState
    since: AlertTime = Field(description="when the camera stopped delivering frames (start of the outage)")
    opened_at: AlertTime = Field(description="when the outage was declared (since + at least the grace period)")
    recovered_at: AlertTime | None = Field(default=None, description="since when frames flow again (recovered only)")
    last_frame_time: AlertTime | None = Field(default=None, description="capture time of the last frame reported")
    reason: str = Field(default="", max_length=MAX_REASON_LENGTH, pattern=_REASON_PATTERN)
    grace_s: float = Field(default=0.0, ge=0, le=7 * 24 * 3600, description="the grace period that applied")
    event_time: AlertTime = Field(default_factory=utcnow, description="when this event was emitted")

    @model_validator(mode="after")
    def _consistent(self) -> "CameraAlert":
        if self.opened_at < self.since:
            raise ValueError("opened_at is before since")
        if self.state == CameraAlertState.RECOVERED:
            if self.recovered_at is None:
                raise ValueError("a recovered alert needs recovered_at")
            if self.recovered_at < self.since:
                raise ValueError("recovered_at is before since")
        elif self.recovered_at is not None:
            raise ValueError(f"recovered_at is set on a {self.state.value} alert")
        return self


# --------------------------------------------------------------------------- dead letters


class DeadLetter(Event):
    """A rejected record and why. The payload is kept byte-exact (base64) so nothing is lost."""

    source_topic: str
    key: str | None = None
    reason: str
    service: str
    payload_b64: str
    at: UtcDatetime = Field(default_factory=utcnow)
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def wrap(
        cls,
        *,
        source_topic: str,
        key: bytes | str | None,
        payload: bytes | None,
        reason: str,
        service: str,
        **extra: Any,
    ) -> "DeadLetter":
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        return cls(
            source_topic=source_topic,
            key=k,
            reason=reason,
            service=service,
            payload_b64=base64.b64encode(payload or b"").decode(),
            extra=extra,
        )

    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)


def dumps_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()
