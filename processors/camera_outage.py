"""Camera outages: a pure state machine (no I/O; the caller passes the clock).

One :class:`OutageState` per configured camera (stored as JSON in Redis by
``processors.outage_store``). :func:`observe` feeds it one heartbeat of ``camera-health``,
:func:`tick` is the timer (a producer that died sends nothing at all: silence is an outage too);
both return the new state and the :class:`~spillwatch.events.CameraAlert` events the step produces.
Same inputs, same outputs: a redelivered heartbeat changes nothing, and an outage's incident id
is derived from when it began.

Conditions, judged at a time ``T``::

    good    the newest heartbeat says ``online`` and is at most ``silence_s`` old
    bad     it says ``stalled`` or ``offline``, or no heartbeat for more than ``silence_s`` (silent)

Rules (hysteresis both ways)::

    steady --(bad)--> unsteady since B          (B: the first stalled/offline heartbeat, or the
                                                  last heartbeat before a silence)
    unsteady --(bad at T, T - B >= grace_s)--> OUTAGE: one ``offline``/``stalled`` event (one page)
    unsteady/OUTAGE --(good since G, T - G >= recovery_s)--> steady; an open outage closes with
                                                  one ``recovered`` event (one recovery notice)

A good spell shorter than ``recovery_s`` does not end the unsteady stretch: a camera flapping
online/offline every few seconds opens one outage ``grace_s`` after it began to flap and stays in
it until frames flow steadily again; a short blip (bad for less than ``grace_s``, then steady)
pages nothing. Within an outage nothing more is paged (stalled -> offline is the same outage).

Time. Heartbeats are facts stamped by the producer: ``observe`` decides at the heartbeat's own
time (``min(at, received)``), so a backlog read late (a monitor restart) replays the past as it
happened: contiguous heartbeats show no silence, a real gap in them does. The timer decides at
the wall clock but only about the time the monitor has been watching: every stored time is
clamped to ``floor`` (when this monitor began reading ``camera-health``), so a restarted or
rescaled monitor gives the backlog ``silence_s`` to arrive before it presumes silence and never
pages an outage of its own making. A presumed silence that the heartbeats later show did not
happen (they were contiguous) is withdrawn if it has not paged yet.

Recovery needs evidence: only heartbeats close an outage (the timer only opens them), so the
recovery notice follows at most one heartbeat interval after ``recovery_s``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from spillwatch.events import (
    CAMERA_ID_PATTERN,
    MAX_EVENT_TIME,
    MAX_REASON_LENGTH,
    MIN_EVENT_TIME,
    CameraAlert,
    CameraAlertState,
    CameraHealth,
    CameraState,
)

if TYPE_CHECKING:  # pragma: no cover
    from spillwatch.settings import Settings

# A heartbeat stamped further than this in the future is garbage (or a producer without NTP).
MAX_FUTURE_S = 300.0
MAX_FPS = 1000.0
_CAMERA_ID = re.compile(CAMERA_ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


# --------------------------------------------------------------------------- parameters


class OutageParams(BaseModel):
    """Effective outage parameters of one camera (``outages`` settings + the camera's override)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    grace_s: float = Field(default=60.0, ge=0)
    recovery_s: float = Field(default=30.0, ge=0)
    silence_s: float = Field(default=15.0, gt=0)


def silence_for(settings: Settings) -> float:
    """No heartbeat this long = silent: ``outages.silence_s``, default 3 heartbeat intervals."""
    return settings.outages.silence_s or 3.0 * settings.producer.heartbeat_s


def params_for(settings: Settings, camera_id: str) -> OutageParams:
    """``outages.grace_s`` / ``recovery_s``, the camera's ``outage_grace_s`` overriding the grace."""
    o = settings.outages
    cam = settings.camera(camera_id)
    grace = cam.outage_grace_s if cam is not None and cam.outage_grace_s is not None else o.grace_s
    return OutageParams(grace_s=grace, recovery_s=o.recovery_s, silence_s=silence_for(settings))


# --------------------------------------------------------------------------- heartbeats


class HeartbeatError(ValueError):
    """A ``camera-health`` record that must not count (dead-lettered with ``category``)."""

    def __init__(self, reason: str, category: str) -> None:
        super().__init__(reason)
        self.category = category


class Heartbeat(BaseModel):
    """A validated heartbeat: ``at`` is its evidence time, ``min(at, received)``."""

    model_config = ConfigDict(frozen=True)

    camera_id: str
    state: CameraState
    at: datetime
    last_frame_time: datetime | None = None
    error: str | None = None


def _plausible(t: datetime | None) -> bool:
    return t is None or MIN_EVENT_TIME <= t < MAX_EVENT_TIME


def clean_reason(text: str | None, limit: int = 300) -> str | None:
    """A producer's error as one printable line (it travels into pages)."""
    if not text:
        return None
    out = _CONTROL.sub(" ", text).strip()
    return (out[: limit - 1] + "…" if len(out) > limit else out) or None


def heartbeat_from(h: CameraHealth, key: bytes | None, received: datetime, cameras: Collection[str]) -> Heartbeat:
    """Check one heartbeat as a hostile record: a configured camera (``cameras``), the record key
    naming the same camera, plausible times (2000..2099, at most ``MAX_FUTURE_S`` ahead of
    ``received``), a finite fps. Raises HeartbeatError with the reason and a category."""
    cam = h.camera_id
    if not (0 < len(cam) <= 128 and _CAMERA_ID.match(cam)):
        raise HeartbeatError(f"camera id {cam[:64]!r} is not a camera id", "malformed")
    if cam not in cameras:
        raise HeartbeatError(f"unknown camera {cam!r} (not in the configured cameras)", "unknown_camera")
    if key is not None and key != cam.encode():
        raise HeartbeatError(f"record key {key[:64]!r} does not name camera {cam!r}", "malformed")
    if not (math.isfinite(h.fps) and 0 <= h.fps <= MAX_FPS) or h.frames_published < 0:
        raise HeartbeatError(f"implausible fps {h.fps!r} or frame count {h.frames_published!r}", "malformed")
    if not (_plausible(h.at) and _plausible(h.last_frame_time)):
        raise HeartbeatError("a time outside 2000..2099", "malformed")
    ahead = (h.at - received).total_seconds()
    if ahead > MAX_FUTURE_S:
        raise HeartbeatError(f"stamped {ahead:.0f} s in the future (producer clock?)", "clock_skew")
    return Heartbeat(camera_id=cam, state=h.state, at=min(h.at, received), last_frame_time=h.last_frame_time,
                     error=clean_reason(h.error))


# --------------------------------------------------------------------------- state


class OpenOutage(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    state: CameraAlertState
    since: datetime
    opened_at: datetime
    reason: str = ""
    grace_s: float = 0.0


class OutageState(BaseModel):
    """What the monitor knows of one camera (times are heartbeat evidence times)."""

    model_config = ConfigDict(frozen=True)

    camera_id: str
    watch_since: datetime | None = Field(default=None, description="first tick for a camera never heard from")
    last_seen: datetime | None = Field(default=None, description="the newest heartbeat")
    reported: CameraState | None = None
    error: str | None = None
    last_frame_time: datetime | None = None
    bad_since: datetime | None = Field(default=None, description="start of the unsteady stretch (None: steady)")
    presumed: bool = Field(default=False, description="the stretch is only a silence the timer presumed")
    good_since: datetime | None = Field(default=None, description="start of the current run of good heartbeats")
    outage: OpenOutage | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> OutageState:
        return cls.model_validate_json(raw)


class Step(BaseModel):
    """A step's result. ``duplicate``: nothing changed (a redelivered heartbeat, an idle tick):
    the caller writes nothing."""

    model_config = ConfigDict(frozen=True)

    state: OutageState
    alerts: list[CameraAlert] = Field(default_factory=list)
    duplicate: bool = False


def incident_id(camera_id: str, since: datetime) -> str:
    """``outage-<camera>-<since, UTC, ms>``: one id per outage, the same on every replay."""
    return f"outage-{camera_id}-{since:%Y%m%dT%H%M%S}.{since.microsecond // 1000:03d}Z"


def _hms(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}Z"


def _secs(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds()


def _open(st: OutageState, kind: CameraAlertState, since: datetime, at: datetime, reason: str,
          params: OutageParams) -> tuple[OutageState, CameraAlert]:
    inc = OpenOutage(incident_id=incident_id(st.camera_id, since), state=kind, since=since, opened_at=at,
                     reason=reason[:MAX_REASON_LENGTH], grace_s=params.grace_s)
    alert = CameraAlert(
        incident_id=inc.incident_id, camera_id=st.camera_id, state=kind, since=since, opened_at=at,
        last_frame_time=st.last_frame_time, reason=inc.reason, grace_s=params.grace_s, event_time=at,
    )
    return st.model_copy(update={"outage": inc}), alert


def _close(st: OutageState, frames_since: datetime, at: datetime, reason: str) -> tuple[OutageState, CameraAlert]:
    inc = st.outage
    assert inc is not None
    alert = CameraAlert(
        incident_id=inc.incident_id, camera_id=st.camera_id, state=CameraAlertState.RECOVERED, since=inc.since,
        opened_at=inc.opened_at, recovered_at=max(frames_since, inc.since), last_frame_time=st.last_frame_time,
        reason=reason[:MAX_REASON_LENGTH], grace_s=inc.grace_s, event_time=max(at, inc.opened_at),
    )
    return st.model_copy(update={"outage": None, "bad_since": None, "presumed": False}), alert


def _bad_reason(st: OutageState) -> str:
    what = st.reported.value if st.reported is not None else "offline"
    return f"{what}: {st.error}" if st.error else f"reported {what} by its producer"


def _silence_reason(st: OutageState) -> str:
    if st.last_seen is None:
        return "no heartbeat received (producer not running?)"
    tail = f"; last reported {_bad_reason(st)}" if st.reported not in (None, CameraState.ONLINE) else ""
    return f"no heartbeat since {_hms(st.last_seen)} (producer stopped?){tail}"


# --------------------------------------------------------------------------- transitions


def observe(state: OutageState, hb: Heartbeat, params: OutageParams) -> Step:
    """Feed one heartbeat; decisions are taken at its evidence time ``hb.at``."""
    te = hb.at
    if state.last_seen is not None and te <= state.last_seen:
        return Step(state=state, duplicate=True)  # redelivered, or older than what we know
    st = state
    alerts: list[CameraAlert] = []
    # 1. a gap between two heartbeats is a silence that really happened
    if st.last_seen is not None:
        if _secs(te, st.last_seen) > params.silence_s:
            start = min(st.bad_since, st.last_seen) if st.bad_since is not None else st.last_seen
            st = st.model_copy(update={"bad_since": start, "presumed": False, "good_since": None})
            if st.outage is None and _secs(te, start) >= params.grace_s:
                reason = f"no heartbeat from {_hms(st.last_seen)} to {_hms(te)}"  # type: ignore[arg-type]
                st, alert = _open(st, CameraAlertState.OFFLINE, start, te, reason, params)
                alerts.append(alert)
        elif st.presumed and st.outage is None:
            st = st.model_copy(update={"bad_since": None, "presumed": False})  # the silence did not happen
    # 2. the heartbeat's own facts
    st = st.model_copy(update={
        "last_seen": te,
        "reported": hb.state,
        "error": hb.error,
        "last_frame_time": hb.last_frame_time or st.last_frame_time,
    })
    if hb.state == CameraState.ONLINE:
        if st.good_since is None:
            st = st.model_copy(update={"good_since": te})
        assert st.good_since is not None
        if _secs(te, st.good_since) >= params.recovery_s:  # frames flow steadily again
            if st.outage is not None:
                st, alert = _close(st, st.good_since, te, f"frames flowing again since {_hms(st.good_since)}")
                alerts.append(alert)
            st = st.model_copy(update={"bad_since": None, "presumed": False})
    else:
        st = st.model_copy(update={
            "good_since": None,
            "bad_since": st.bad_since if st.bad_since is not None else te,
            "presumed": False,
        })
        assert st.bad_since is not None
        if st.outage is None and _secs(te, st.bad_since) >= params.grace_s:
            kind = CameraAlertState.STALLED if hb.state == CameraState.STALLED else CameraAlertState.OFFLINE
            st, alert = _open(st, kind, st.bad_since, te, _bad_reason(st), params)
            alerts.append(alert)
    return Step(state=st, alerts=alerts)


def tick(state: OutageState, params: OutageParams, now: datetime, floor: datetime) -> Step:
    """The timer: open the outage of a camera that has been silent (or reported bad) for the grace
    period, counting only time since ``floor`` (when this monitor began reading the heartbeats)."""
    if state.outage is not None:
        return Step(state=state, duplicate=True)  # only heartbeats close an outage
    st = state
    if st.last_seen is None and st.watch_since is None:
        st = st.model_copy(update={"watch_since": now})
    seen = st.last_seen or st.watch_since
    assert seen is not None
    silent_since = max(seen, floor)
    alerts: list[CameraAlert] = []
    if _secs(now, silent_since) > params.silence_s:
        if st.bad_since is None:
            st = st.model_copy(update={"bad_since": silent_since, "presumed": True})
        if st.good_since is not None:
            st = st.model_copy(update={"good_since": None})
        assert st.bad_since is not None
        start = max(st.bad_since, floor)
        if _secs(now, start) >= params.grace_s:
            st, alert = _open(st, CameraAlertState.OFFLINE, start, now, _silence_reason(st), params)
            alerts.append(alert)
    elif st.reported in (CameraState.STALLED, CameraState.OFFLINE) and st.bad_since is not None:
        start = max(st.bad_since, floor)
        if _secs(now, start) >= params.grace_s:
            kind = CameraAlertState.STALLED if st.reported == CameraState.STALLED else CameraAlertState.OFFLINE
            st, alert = _open(st, kind, start, now, _bad_reason(st), params)
            alerts.append(alert)
    return Step(state=st, alerts=alerts, duplicate=st == state)


def retire(state: OutageState, now: datetime) -> Step:
    """A camera no longer configured (removed or disabled): its open outage closes with a
    ``recovered`` event that says so, so nothing stays open for ever."""
    if state.outage is None:
        return Step(state=state, duplicate=True)
    st, alert = _close(state, now, now, "camera no longer configured; the outage is closed without frames")
    return Step(state=st, alerts=[alert])
