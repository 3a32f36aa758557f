"""Versioned wire events. Every stage validates what it reads and writes with these models.

JSON for everything but frames; frames travel as a small binary envelope (no pickle):

    b"SWF1" | uint32 big-endian header length | header JSON (FrameHeader) | JPEG bytes

Times are timezone-aware UTC; ``capture_time`` is stamped by the producer at capture, never by a
later stage.

Limits of the wire contract (defaults of ``settings.limits``; every consumer checks them before any
other work, so one hostile record costs a length comparison):

* a ``frames`` record is at most ``MAX_FRAME_BYTES`` (4 MB), any other event ``MAX_EVENT_BYTES``
  (64 KiB);
* the image of a frame is a JPEG (baseline or progressive, what producers and replay send; PNG and
  anything else is rejected) whose header (SOF) declares at most ``limits.image_pixels`` pixels,
  read by :func:`jpeg_info` without decoding it;
* a capture time more than ``limits.capture_ahead_s`` ahead of the reader's clock is rejected
  (:func:`capture_ahead`): a forged or clock-skewed frame cannot move a camera's state into the
  future;
* a :class:`DeadLetter` never exceeds the broker's default record limit (1 MiB): it keeps the
  rejected bytes whole up to ``DEAD_LETTER_PAYLOAD_BYTES`` and otherwise a prefix, with the
  original's size, sha256 and topic/partition/offset.

Schema version: ``v`` stays 1; fields added since (``FrameHeader.epoch``, ``Classification.epoch``,
``Classification.looks``, ``.suppressed`` and ``.inferred``, the bounded-payload fields of ``DeadLetter``) are
optional, so old records still validate and old readers ignore them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION: Literal[1] = 1

# Ground truth of a frame, where known (replay, synthetic clips, labelled archives).
FrameLabel = Literal["spill", "clean"]
FRAME_MAGIC = b"SWF1"
MAX_FRAME_HEADER_BYTES = 16 * 1024
MAX_FRAME_BYTES = 4_000_000  # default of limits.frame_bytes: one frames record
MAX_EVENT_BYTES = 64 * 1024  # default of limits.event_bytes: classifications, spill-alerts, camera-health
DEAD_LETTER_PAYLOAD_BYTES = 256 * 1024  # default of limits.dead_letter_payload_bytes
# Hard cap of the bytes a dead letter keeps: base64 (4/3) plus the other fields stays under the
# 1 MiB record limit Apache Kafka applies by default (message.max.bytes).
MAX_DEAD_LETTER_PAYLOAD_BYTES = 640 * 1024
MAX_SEQ = 2**63 - 1


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
    seq: int = Field(ge=0, le=MAX_SEQ, description="per-camera sequence number, increasing within an epoch")
    epoch: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEQ,
        description="identity of the producer run that numbered seq (start time in ms x 1000 + a random 0..999); "
        "None: a producer from before epochs",
    )
    capture_time: UtcDatetime
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    encoding: Literal["jpeg"] = "jpeg"
    producer: str = ""
    source_uri: str = ""
    # Ground-truth / replay context travels with the frame when known (replay, synthetic clips).
    label: FrameLabel | None = None


def new_epoch() -> int:
    """A producer run's epoch: its start time in ms x 1000 plus a random 0..999, so two runs (a
    restart, a second producer on the same camera) practically never share one, even with a clock
    that starts from the same value at every boot."""
    return int(time.time() * 1000) * 1000 + secrets.randbelow(1000)


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


def peek_frame_header(data: bytes) -> FrameHeader | None:
    """The header of a frame envelope, or of the kept prefix of one (a dead letter); None if there
    is none to read. Never decodes the image."""
    if len(data) < 8 or data[:4] != FRAME_MAGIC:
        return None
    (n,) = struct.unpack(">I", data[4:8])
    if n > MAX_FRAME_HEADER_BYTES or 8 + n > len(data):
        return None
    try:
        return FrameHeader.from_bytes(data[8 : 8 + n])
    except EventError:
        return None


@dataclass(frozen=True)
class JpegInfo:
    """What a JPEG's markers say about it, read without decoding a pixel."""

    width: int
    height: int
    progressive: bool
    scans: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# Start-of-frame markers a frame may use: baseline, extended sequential, progressive (Huffman).
# Lossless, hierarchical and arithmetic-coded JPEGs are never produced by the producers or replay.
_SOF_ACCEPTED = {0xC0: False, 0xC1: False, 0xC2: True}
_SOF_ALL = {m for m in range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}


def jpeg_info(data: bytes) -> JpegInfo:
    """Dimensions, coding and scan count of a JPEG from its markers (no decoding; O(bytes) with
    ``bytes.find``, so hostile input costs no more than a scan of its length).

    Raises EventError for anything that is not a JPEG a producer sends: another format (PNG, ...),
    no frame header before the image data, an empty or unsupported frame."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8 or data[2] != 0xFF:
        kind = "PNG" if data[:8] == b"\x89PNG\r\n\x1a\n" else "not a JPEG"
        raise EventError(f"frame image is {kind}: frames carry JPEG only")
    i = 2
    while True:
        i = data.find(b"\xff", i)
        if i < 0 or i + 1 >= n:
            raise EventError("JPEG has no frame header (SOF) before its end")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            raise EventError("JPEG image data before its frame header (SOF)")
        if i + 4 > n:
            raise EventError("JPEG truncated in a marker segment")
        seg = (data[i + 2] << 8) | data[i + 3]
        if seg < 2:
            raise EventError("JPEG marker segment with an invalid length")
        if marker in _SOF_ALL:
            if marker not in _SOF_ACCEPTED:
                raise EventError(f"unsupported JPEG coding (SOF marker 0x{marker:02X}): frames are baseline or progressive")
            if i + 9 > n:
                raise EventError("JPEG truncated in its frame header (SOF)")
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            if width == 0 or height == 0:
                raise EventError(f"JPEG declares an empty image ({width}x{height})")
            return JpegInfo(width, height, _SOF_ACCEPTED[marker], data.count(b"\xff\xda", i))
        i += 2 + seg


def check_jpeg(data: bytes, *, max_pixels: int, max_scans: int) -> JpegInfo:
    """:func:`jpeg_info` plus the limits: raises EventError (``image too large`` / ``too many scans``)
    before any decoder allocates memory for the image."""
    info = jpeg_info(data)
    if info.pixels > max_pixels:
        raise EventError(f"image too large: {info.width}x{info.height} = {info.pixels} px > limit {max_pixels} px")
    if info.scans > max_scans:
        raise EventError(f"image has too many scans: {info.scans} > limit {max_scans}")
    return info


def capture_ahead(capture_time: datetime, now: datetime, limit_s: float) -> str | None:
    """Why ``capture_time`` is not acceptable at ``now`` (more than ``limit_s`` ahead of this clock:
    a forged frame or a producer whose clock is wrong), or None when it is fine."""
    ahead = (capture_time - now).total_seconds()
    if ahead > limit_s:
        return f"capture time {capture_time.isoformat()} is {ahead:.0f} s ahead of this clock (limit {limit_s:g} s)"
    return None


# --------------------------------------------------------------------------- classifications


class Region(BaseModel):
    """Where the spill is, in normalised image coordinates (0..1)."""

    model_config = ConfigDict(frozen=True)

    x0: float = Field(ge=0, le=1)
    y0: float = Field(ge=0, le=1)
    x1: float = Field(ge=0, le=1)
    y1: float = Field(ge=0, le=1)
    area: float = Field(ge=0, le=1, default=0.0, description="fraction of the image flagged as spill")


# Learned suppression (spillwatch/suppression.py, docs/suppression.md): the looks of firing cells
# and which entry suppressed which cells. Bounded so a classification stays far below event_bytes.
MAX_LOOK_CELLS = 64  # firing cells described per frame (the strongest first)
LOOK_FEATURES = ("lightness", "green_red", "blue_yellow", "contrast", "edges", "highlight")
MAX_SUPPRESSING_ENTRIES = 16
ENTRY_ID_PATTERN = r"^sup-[0-9a-f]{8,64}$"
CellIndex = Annotated[int, Field(ge=0, le=65535)]
LookValue = Annotated[int, Field(ge=0, le=65535)]
CellLook = Annotated[list[LookValue], Field(min_length=1 + len(LOOK_FEATURES), max_length=1 + len(LOOK_FEATURES))]


class SuppressedCells(BaseModel):
    """Cells of one frame that a learned false alarm (``entry``) matched, place and look."""

    model_config = ConfigDict(frozen=True)

    entry: str = Field(pattern=ENTRY_ID_PATTERN)
    cells: list[CellIndex] = Field(min_length=1, max_length=MAX_LOOK_CELLS)


class Classification(Event):
    camera_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0, le=MAX_SEQ)
    epoch: int | None = Field(default=None, ge=0, le=MAX_SEQ, description="the frame's producer epoch")
    capture_time: UtcDatetime
    spill_prob: float = Field(ge=0, le=1)
    # Coarse spill map: grid rows of per-cell probabilities quantised to 0..255 (row-major).
    spill_map: list[list[int]] | None = None
    region: Region | None = None
    model_version: str
    worker: str = ""
    inference_ms: float = Field(ge=0, default=0.0)
    classified_at: UtcDatetime = Field(default_factory=utcnow)
    label: FrameLabel | None = None
    looks: list[CellLook] | None = Field(
        default=None,
        max_length=MAX_LOOK_CELLS,
        description="per firing map cell (>= map_threshold): [cell index (row-major), then LOOK_FEATURES 0..255]",
    )
    suppressed: list[SuppressedCells] | None = Field(
        default=None, max_length=MAX_SUPPRESSING_ENTRIES, description="firing cells a learned false alarm matched, by entry"
    )
    inferred: bool = Field(
        default=True,
        description="false: the scene had not changed, so the worker reused the result of the camera's last classified "
        "frame (change gating); ids and times are this frame's",
    )


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
    def _consistent(self) -> SpillAlert:
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
    def _consistent(self) -> CameraAlert:
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


_DL_TEXT = 2000  # longest reason / key / extra string kept in a dead letter


def _clip(text: str, limit: int = _DL_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _bounded(value: Any) -> Any:
    """A JSON-safe, size-bounded copy of an ``extra`` value."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _clip(str(value), 500)


class DeadLetter(Event):
    """A rejected record and why, never larger than the broker accepts.

    The rejected bytes are kept whole (base64) when they fit ``payload_limit`` (``complete``);
    otherwise their first ``payload_limit`` bytes, with the original's ``payload_size`` and
    ``payload_sha256`` and where it was read (``partition``/``offset`` of ``source_topic``), so the
    original can be found and checked while the source topic retains it."""

    source_topic: str
    key: str | None = None
    reason: str
    service: str
    payload_b64: str
    payload_size: int | None = Field(default=None, ge=0, description="size of the original record value")
    payload_sha256: str | None = None
    truncated: bool = False
    partition: int | None = None
    offset: int | None = None
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
        partition: int | None = None,
        offset: int | None = None,
        payload_limit: int = DEAD_LETTER_PAYLOAD_BYTES,
        **extra: Any,
    ) -> DeadLetter:
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        data = payload or b""
        keep = max(0, min(payload_limit, MAX_DEAD_LETTER_PAYLOAD_BYTES))
        return cls(
            source_topic=source_topic,
            key=None if k is None else _clip(k, 256),
            reason=_clip(reason),
            service=service,
            payload_b64=base64.b64encode(data[:keep]).decode(),
            payload_size=len(data),
            payload_sha256=hashlib.sha256(data).hexdigest(),
            truncated=len(data) > keep,
            partition=partition,
            offset=offset,
            extra={str(name)[:64]: _bounded(v) for name, v in list(extra.items())[:32]},
        )

    def payload(self) -> bytes:
        """The kept bytes: the whole original when ``complete``, else its prefix."""
        return base64.b64decode(self.payload_b64)

    @property
    def complete(self) -> bool:
        return not self.truncated


def dumps_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()
