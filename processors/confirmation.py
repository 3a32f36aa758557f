"""The per-camera incident state machine: pure logic, no I/O.

One :class:`CameraState` per camera (a pydantic model, stored as JSON in Redis by
``processors.state_store``). :func:`observe` feeds it one classification and returns the new state
plus the :class:`~spillwatch.events.SpillAlert` events the transition produces; :func:`tick` is the
timer path (escalation while no frames arrive). Nothing here reads a clock: the caller passes
``now``, so the same inputs always give the same outputs (a redelivered record recomputes the same
incident id and the same decision).

States::

    idle --(a frame >= threshold)--> suspected --(k of the last n frames >= threshold)--> confirmed
    suspected --(no frame >= threshold left in the window)--> idle
    confirmed --(clear_n consecutive frames < threshold * clear_threshold_ratio)--> cleared
    cleared --(cooldown_s of capture time elapsed)--> idle (or straight to confirmed when the window
                                                          already holds k hits)
    confirmed --(escalate_after_s without acknowledgement)--> one ``escalated`` event, stays confirmed

Events: ``confirmed`` once per incident (on the frame that completes k of n), ``escalated`` at most
once per incident, ``cleared`` once per incident.

Defaults (``settings.aggregator``: window n = 5, confirm_k = 3, clear_n = 10, ratio 0.5,
cooldown 60 s). Producers sample at ~2 fps (spills are static), so 5 frames span 2.5 s of video:

* 3 consecutive positive frames confirm 1.0 s after the first one (frames at t, t+0.5, t+1.0); a
  detection that flickers (3 of 5) confirms at most 2.0 s after its first positive frame. With the
  producer's sampling delay (<= 0.5 s) a real spill pages ~1.5-2.5 s after it appears, well inside
  the issue's "confirmation window + 1 s" budget.
* A single odd frame (a reflection, a person's dark coat, a JPEG glitch) never pages, nor do two
  odd frames within 2.5 s. If false positives were independent with per-frame rate p, a window
  would page with probability ~10 p^3 (1e-5 at p = 1 %); they are correlated in practice (a static
  scene), which is what the per-camera threshold and zone are for.
* Clearing needs 10 consecutive frames (5 s) below half the threshold: a person standing in front
  of the spill or a flicker of the detector does not clear (and then re-page) an incident, and the
  band between threshold/2 and threshold holds the current state (hysteresis).
* After clearing, a 60 s cooldown stops a mopped-but-still-wet floor from paging again at once.

Redelivery, order and hostile input: the admission rule. Kafka keys frames and classifications by
camera id, so one camera's records arrive in order from one partition; duplicates appear after a
worker is killed or a group rebalances (at-least-once). Every frame is identified by its producer's
*epoch* (one value per producer run, chosen at start: start time in ms x 1000 + a random 0..999;
``None`` for producers from before epochs) and its ``seq`` within that run. A camera's state keeps
one high-water mark per epoch (``StreamMark``: highest seq, latest capture time; the
``MAX_STREAMS`` most recently used) and the newest capture time it accepted. :func:`admit` decides,
with ``A = capture_ahead_s`` (``limits.capture_ahead_s``) and ``S = stale_after_s``
(``aggregator.stale_after_s``, validated ``S > A``):

1. ``future``: capture time more than ``A`` ahead of ``now`` (the processing clock): rejected
   (the aggregator dead-letters it before it gets here; this is the same rule, so the state can
   never hold a capture time beyond ``now + A``);
2. ``stale``: captured more than ``S`` before the newest capture this camera accepted;
3. ``duplicate``: its epoch's mark has a seq >= this one **and** a capture time >= this one
   (a redelivered record or one that arrived after a later one of its own run);
4. ``restart``: seq not above its epoch's mark but a later capture time: the same run numbered from
   the start again (producers from before epochs, ``producer.seq_from_clock`` off): taken, and the
   window restarts;
5. otherwise ``new``: taken. Records of another epoch never count against this one: a restarted
   producer (new epoch) and two producers on one camera by mistake (two epochs, both taken, the
   window sees both) are never dropped.

Why no state can wedge a camera (tests/test_hostile_confirmation.py proves it with hypothesis):
every capture time in the state is <= ``now + A`` (rule 1; clocks of the aggregators are assumed
monotonic and in sync, NTP). So a frame of a *new* epoch captured less than ``S - A`` (8 min by
default) before ``now`` is always taken, whatever records came before; a frame of an existing epoch
is dropped only while an accepted record of the *same* epoch had a seq >= and a capture time >=
its own: a later frame of its own run, or a forgery that copied its epoch, and such a forgery
stops mattering once the real capture times pass it, at most ``A`` later. One forged or clock-skewed
record therefore costs at most its own vote (and, beyond ``max_gap_s``, an emptied window), never
a camera. A state from before epochs (no marks) is read as the mark of epoch ``None``.

A frame that arrives after a later one of its run is dropped (rule 3): at 2 fps that loses one
vote of the window, never an incident. Gaps in seq (dropped frames) are fine; a forward gap of more
than ``max_gap_s`` of capture time empties the window (old votes do not mix with new ones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spillwatch.events import AlertState, Classification, Evidence, Region, SpillAlert
from spillwatch.suppression import suppressed_cells

if TYPE_CHECKING:  # pragma: no cover
    from spillwatch.settings import Settings

Polygon = tuple[tuple[float, float], ...]


# --------------------------------------------------------------------------- parameters


class ConfirmParams(BaseModel):
    """Effective confirmation parameters of one camera (global settings + camera overrides)."""

    model_config = ConfigDict(frozen=True)

    threshold: float = Field(ge=0, le=1, description="a frame counts as a hit at or above this score")
    window: int = Field(default=5, ge=1)
    confirm_k: int = Field(default=3, ge=1)
    clear_ratio: float = Field(default=0.5, gt=0, le=1)
    clear_n: int = Field(default=10, ge=1)
    cooldown_s: float = Field(default=60.0, ge=0)
    escalate_after_s: float = Field(default=300.0, gt=0)
    max_gap_s: float = Field(default=30.0, gt=0)
    capture_ahead_s: float = Field(default=120.0, gt=0, description="captures further ahead of now are refused")
    stale_after_s: float = Field(default=600.0, gt=0, description="captures this long before the newest are stale")
    map_threshold: float = Field(default=0.5, ge=0, le=1)
    zone: Polygon | None = None
    zone_name: str | None = None

    def model_post_init(self, __context: object) -> None:
        if self.confirm_k > self.window:
            raise ValueError("confirm_k must be <= window")
        if self.stale_after_s <= self.capture_ahead_s:
            raise ValueError("stale_after_s must exceed capture_ahead_s")

    @property
    def clear_below(self) -> float:
        return self.threshold * self.clear_ratio


def params_for(
    settings: Settings, camera_id: str, *, model_threshold: float, map_threshold: float = 0.5
) -> ConfirmParams:
    """Global aggregator settings, overridden by the camera's entry in ``settings.cameras``.

    The threshold is, in order: the camera's ``threshold``, ``aggregator.threshold`` when set, the
    model card's threshold (``model_threshold``)."""
    agg = settings.aggregator
    cam = settings.camera(camera_id)
    threshold = model_threshold
    if agg.threshold is not None:
        threshold = agg.threshold
    window, k, zone = agg.window, agg.confirm_k, None
    if cam is not None:
        if cam.threshold is not None:
            threshold = cam.threshold
        window = cam.window or window
        k = cam.confirm_k or k  # k <= window: validated with the settings (never clamped silently)
        zone = tuple((float(x), float(y)) for x, y in cam.zone) if cam.zone else None
    return ConfirmParams(
        threshold=threshold,
        window=window,
        confirm_k=k,
        clear_ratio=agg.clear_threshold_ratio,
        clear_n=agg.clear_n,
        cooldown_s=agg.cooldown_s,
        escalate_after_s=agg.escalate_after_s,
        max_gap_s=agg.max_gap_s,
        capture_ahead_s=settings.limits.capture_ahead_s,
        stale_after_s=agg.stale_after_s,
        map_threshold=map_threshold,
        zone=zone,
        zone_name=f"{camera_id}-zone" if zone else None,
    )


# --------------------------------------------------------------------------- zones


def _inside(px: np.ndarray, py: np.ndarray, poly: Polygon) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over points."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x2 - x1) * (py - y1) / (y2 - y1) + x1
        inside ^= crosses & (px < x_at)
    return inside


@lru_cache(maxsize=256)
def zone_mask(zone: Polygon, rows: int, cols: int, samples: int = 4) -> np.ndarray:
    """Rasterise a normalised polygon onto a ``rows x cols`` grid (the spill map's).

    A cell belongs to the zone when any of its ``samples x samples`` sub-cell sample points lies
    inside the polygon, i.e. cells the zone touches by more than ~1/samples² count. Generous on
    purpose: the map is coarse (a cell is 1/G of the image), and a spill at the zone's edge should
    not be cut off by rounding. The result is read-only (it is cached)."""
    off = (np.arange(samples) + 0.5) / samples
    ys = (np.arange(rows)[:, None] + off[None, :]).reshape(-1) / rows  # rows*samples
    xs = (np.arange(cols)[:, None] + off[None, :]).reshape(-1) / cols
    gx, gy = np.meshgrid(xs, ys)
    inside = _inside(gx, gy, zone).reshape(rows, samples, cols, samples)
    mask = np.asarray(inside.any(axis=(1, 3)))
    mask.setflags(write=False)
    return mask


def effective_score(
    prob: float,
    spill_map: Sequence[Sequence[int]] | None,
    zone: Polygon | None,
    map_threshold: float,
    suppressed: Collection[int] = (),
    threshold: float | None = None,
) -> float:
    """The score a frame contributes to its camera's window.

    Without a zone it is the frame's calibrated ``spill_prob`` (the threshold was chosen on it).

    With a zone, the frame probability is *gated* by the spill map inside the zone: let ``z`` be the
    largest map cell (0..1) inside the zone. If ``z >= map_threshold`` the spill region (the cells
    the classifier reports as spill, same ``map_threshold``) reaches into the zone, and the frame
    counts with its full ``spill_prob``. Otherwise the score is ``min(spill_prob, z)``: the frame
    can only be as suspicious as the most suspicious part of the zone, so a spill outside the zone
    scores low however sure the frame-level head is. Why not the map alone: the map is a coarse,
    less calibrated output; the frame probability stays the decision quantity and the thresholds keep
    their meaning, the map only says *where*.

    ``suppressed`` (row-major cell indices a learned false alarm matched, spillwatch/suppression.py)
    takes those cells out of the gate's region the same way: with a zone, of the zone; without,
    of the whole map. Any other cell at or above ``map_threshold`` gives the full probability, as
    above. When none does, the sub-threshold values right around the suppressed cells are theirs
    too (the coarse map spills a firing cell over into its 8 neighbours): ``z`` is then taken over
    the region without the suppressed cells and their neighbours, so a suppressed look-alike
    cannot hold an incident open with its halo. A frame with no suppressed cell is scored exactly
    as without suppression.

    ``threshold`` (the camera's decision threshold) puts ``z`` on the frame score's scale when the
    threshold is below the map threshold: a map value below ``map_threshold`` becomes
    ``z x threshold / map_threshold``, so "no cell of the region fires" always means "below the
    threshold" (such a model would otherwise count a frame on the sub-threshold halo of a zone's edge
    or of a suppressed look-alike). It never raises ``z`` (a threshold at or above the map threshold
    already puts every non-firing ``z`` below it, and clearing keeps its meaning). Without it ``z`` is
    used as it is.

    A classification without a map cannot be localised: it counts with its frame probability
    (fail-open: a missed spill costs more than a page for a spill near the zone)."""
    if (zone is None and not suppressed) or not spill_map:
        return float(prob)
    grid = np.asarray(spill_map, dtype=np.float32) / 255.0
    if grid.ndim != 2 or grid.size == 0:
        return float(prob)
    cells = [c for c in suppressed if 0 <= c < grid.size]
    if zone is None and not cells:
        return float(prob)
    mask = zone_mask(zone, grid.shape[0], grid.shape[1]) if zone is not None else np.ones(grid.shape, dtype=bool)
    if cells:
        mask = mask.copy()  # zone_mask's result is cached and read-only
        mask.flat[cells] = False
    if not mask.any():
        return 0.0
    z = float(grid[mask].max())
    if z >= map_threshold:
        return float(prob)
    if cells:
        rest = mask & ~_neighbourhood(cells, grid.shape)
        z = float(grid[rest].max()) if rest.any() else 0.0
    if threshold is not None and map_threshold > 0:
        z *= min(1.0, threshold / map_threshold)
    return float(min(prob, z))


def _neighbourhood(cells: Sequence[int], shape: tuple[int, ...]) -> np.ndarray:
    """The cells and their 8 neighbours, as a mask of ``shape``."""
    hit = np.zeros(shape, dtype=bool)
    hit.flat[list(cells)] = True
    padded = np.pad(hit, 1)
    out = np.zeros_like(padded)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(padded, dy, axis=0), dx, axis=1)
    return out[1:-1, 1:-1]


# --------------------------------------------------------------------------- state


class Phase(StrEnum):
    IDLE = "idle"
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    CLEARED = "cleared"


class Sample(BaseModel):
    """One taken classification in a camera's window; frozen, so that copies of a state share them."""

    model_config = ConfigDict(frozen=True)

    seq: int
    at: datetime
    prob: float
    score: float


class Incident(BaseModel):
    id: str
    first_seq: int
    first_seen: datetime
    confirmed_seq: int
    confirmed_at: datetime
    confirmed_wall: datetime = Field(description="processing time of the confirmation (timer path)")
    peak_prob: float = 0.0
    region: Region | None = None
    model_version: str = ""
    scores: list[float] = Field(default_factory=list)
    frame_seqs: list[int] = Field(default_factory=list)
    escalated: bool = False
    acknowledged: bool = False
    cleared_at: datetime | None = None


MAX_STREAMS = 8


class StreamMark(BaseModel):
    """High-water mark of one producer run (epoch) of a camera."""

    epoch: int | None = None
    seq: int
    capture: datetime
    used: int = Field(default=0, description="CameraState.frames when last taken (least recently used goes first)")


class Admission(StrEnum):
    NEW = "new"
    RESTART = "restart"
    DUPLICATE = "duplicate"
    STALE = "stale"
    FUTURE = "future"

    @property
    def taken(self) -> bool:
        return self in (Admission.NEW, Admission.RESTART)


class CameraState(BaseModel):
    """Everything that matters about one camera; JSON in Redis, never only in a worker's memory."""

    camera_id: str
    phase: Phase = Phase.IDLE
    last_seq: int | None = Field(default=None, description="seq of the last classification taken")
    last_epoch: int | None = None
    last_capture: datetime | None = Field(default=None, description="capture time of the last classification taken")
    newest_capture: datetime | None = Field(default=None, description="latest capture time taken")
    streams: list[StreamMark] = Field(default_factory=list)
    window: list[Sample] = Field(default_factory=list)
    suspect_seq: int | None = None
    suspect_since: datetime | None = None
    clear_run: int = 0
    incident: Incident | None = None
    last_incident_id: str | None = None
    cooldown_until: datetime | None = None
    frames: int = 0
    duplicates: int = 0

    def marks(self) -> list[StreamMark]:
        """The epochs' high-water marks; a state saved before epochs existed gives its one mark."""
        if self.streams or self.last_seq is None or self.last_capture is None:
            return self.streams
        return [StreamMark(epoch=None, seq=self.last_seq, capture=self.last_capture, used=self.frames)]

    def mark(self, epoch: int | None) -> StreamMark | None:
        return next((m for m in self.marks() if m.epoch == epoch), None)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> CameraState:
        return cls.model_validate_json(data)

    @property
    def open_incident(self) -> Incident | None:
        return self.incident if self.phase == Phase.CONFIRMED else None


def _copy_state(state: CameraState) -> CameraState:
    """A copy of ``state`` that the steps may change in place without touching ``state``: its window and
    marks as new lists (the samples are frozen and shared; ``_take`` replaces the marks it changes), its
    incident as a copy. The same as ``model_copy(deep=True)``, which took over half the aggregator's CPU a
    classification (docs/performance.md, The aggregator's transactions)."""
    incident = state.incident.model_copy(deep=True) if state.incident is not None else None
    return state.model_copy(update={"window": list(state.window), "streams": list(state.streams), "incident": incident})


class StepResult(BaseModel):
    state: CameraState
    alerts: list[SpillAlert] = Field(default_factory=list)
    duplicate: bool = Field(default=False, description="not taken (see ``admission``): nothing to store")
    admission: Admission = Admission.NEW
    score: float | None = None


def incident_id(camera_id: str, first_seq: int, first_seen: datetime) -> str:
    """Stable id: the same first suspicious frame always gives the same id (redelivery-safe); the
    capture-time hash keeps ids unique when a producer restarts its sequence numbers."""
    digest = hashlib.sha1(f"{camera_id}|{first_seq}|{first_seen.isoformat()}".encode()).hexdigest()[:8]
    return f"{camera_id}-{first_seq}-{digest}"


def admit(
    state: CameraState, epoch: int | None, seq: int, capture_time: datetime, params: ConfirmParams, now: datetime
) -> Admission:
    """The admission rule of the module docstring (pure)."""
    if (capture_time - now).total_seconds() > params.capture_ahead_s:
        return Admission.FUTURE
    if state.newest_capture is not None and (state.newest_capture - capture_time).total_seconds() > params.stale_after_s:
        return Admission.STALE
    mark = state.mark(epoch)
    if mark is None or seq > mark.seq:
        return Admission.NEW
    if capture_time > mark.capture:
        return Admission.RESTART
    return Admission.DUPLICATE


def _take(st: CameraState, epoch: int | None, seq: int, capture_time: datetime, verdict: Admission) -> None:
    """Record a taken classification in the marks (``st`` is the caller's copy)."""
    marks = [m.model_copy() for m in st.marks()]
    mark = next((m for m in marks if m.epoch == epoch), None)
    if mark is None:
        mark = StreamMark(epoch=epoch, seq=seq, capture=capture_time)
        marks.append(mark)
    elif verdict == Admission.RESTART:
        mark.seq, mark.capture = seq, capture_time
    else:
        mark.seq, mark.capture = max(mark.seq, seq), max(mark.capture, capture_time)
    mark.used = st.frames
    marks.sort(key=lambda m: m.used, reverse=True)
    st.streams = marks[:MAX_STREAMS]
    st.last_seq, st.last_epoch, st.last_capture = seq, epoch, capture_time
    st.newest_capture = capture_time if st.newest_capture is None else max(st.newest_capture, capture_time)


def _alert(
    state: CameraState, inc: Incident, kind: AlertState, params: ConfirmParams, now: datetime
) -> SpillAlert:
    return SpillAlert(
        incident_id=inc.id,
        camera_id=state.camera_id,
        state=kind,
        first_seen=inc.first_seen,
        confirmed_at=inc.confirmed_at,
        cleared_at=inc.cleared_at,
        event_time=now,
        evidence=Evidence(
            scores=inc.scores,
            frame_seqs=inc.frame_seqs,
            peak_prob=inc.peak_prob,
            confirming_seq=inc.confirmed_seq,
            region=inc.region,
        ),
        model_version=inc.model_version,
        zone=params.zone_name,
    )


def _maybe_escalate(
    st: CameraState,
    params: ConfirmParams,
    event_time: datetime,
    *,
    capture_now: datetime | None = None,
    wall_now: datetime | None = None,
) -> SpillAlert | None:
    inc = st.incident
    if st.phase != Phase.CONFIRMED or inc is None or inc.escalated or inc.acknowledged:
        return None
    limit = timedelta(seconds=params.escalate_after_s)
    due = (capture_now is not None and capture_now - inc.confirmed_at >= limit) or (
        wall_now is not None and wall_now - inc.confirmed_wall >= limit
    )
    if not due:
        return None
    inc.escalated = True
    return _alert(st, inc, AlertState.ESCALATED, params, event_time)


def _step_confirmed(st: CameraState, c: Classification, score: float, params: ConfirmParams, now: datetime) -> list[SpillAlert]:
    """A frame of a confirmed incident: track the peak, clear after ``clear_n`` low frames, escalate."""
    inc = st.incident
    assert inc is not None
    if score >= params.threshold and c.spill_prob > inc.peak_prob:
        inc.peak_prob = c.spill_prob
    st.clear_run = st.clear_run + 1 if score < params.clear_below else 0
    if st.clear_run >= params.clear_n:
        inc.cleared_at = max(c.capture_time, inc.confirmed_at)  # never before the confirmation (epochs interleave)
        alert = _alert(st, inc, AlertState.CLEARED, params, now)
        st.phase = Phase.CLEARED
        st.cooldown_until = c.capture_time + timedelta(seconds=params.cooldown_s)
        st.last_incident_id, st.incident = inc.id, None
        st.window, st.clear_run = [], 0
        st.suspect_seq = st.suspect_since = None
        return [alert]
    esc = _maybe_escalate(st, params, now, capture_now=c.capture_time)
    return [esc] if esc is not None else []


def _confirm(st: CameraState, c: Classification, params: ConfirmParams, now: datetime) -> SpillAlert:
    """``confirm_k`` hits in the window: open the incident (id from its first hit) and emit CONFIRMED."""
    assert st.suspect_since is not None and st.suspect_seq is not None
    if c.capture_time < st.suspect_since:  # a confirming frame that is not itself a hit, from an older epoch
        st.suspect_seq, st.suspect_since = c.seq, c.capture_time
    inc = Incident(
        id=incident_id(st.camera_id, st.suspect_seq, st.suspect_since),
        first_seq=st.suspect_seq,
        first_seen=st.suspect_since,
        confirmed_seq=c.seq,
        confirmed_at=c.capture_time,
        confirmed_wall=now,
        peak_prob=max(s.prob for s in st.window if s.score >= params.threshold),
        region=c.region,
        model_version=c.model_version,
        scores=[round(s.score, 4) for s in st.window],
        frame_seqs=[s.seq for s in st.window],
    )
    st.phase, st.incident, st.clear_run = Phase.CONFIRMED, inc, 0
    return _alert(st, inc, AlertState.CONFIRMED, params, now)


def observe(state: CameraState, c: Classification, params: ConfirmParams, now: datetime) -> StepResult:
    """Feed one classification; ``now`` is the processing time (event_time of emitted alerts and the
    timer's reference). Returns the new state (the input is not modified) and the alerts."""
    if c.camera_id != state.camera_id:
        raise ValueError(f"classification for {c.camera_id} fed to the state of {state.camera_id}")
    verdict = admit(state, c.epoch, c.seq, c.capture_time, params, now)
    st = _copy_state(state)
    if not verdict.taken:
        st.duplicates += 1
        return StepResult(state=st, duplicate=True, admission=verdict)

    gap = st.last_capture is not None and (c.capture_time - st.last_capture).total_seconds() > params.max_gap_s
    if verdict == Admission.RESTART or gap:
        st.window = []
        if st.phase == Phase.SUSPECTED:
            st.phase, st.suspect_seq, st.suspect_since = Phase.IDLE, None, None

    score = effective_score(c.spill_prob, c.spill_map, params.zone, params.map_threshold, suppressed_cells(c), params.threshold)
    st.window.append(Sample(seq=c.seq, at=c.capture_time, prob=c.spill_prob, score=score))
    st.window = st.window[-params.window :]
    _take(st, c.epoch, c.seq, c.capture_time, verdict)
    st.frames += 1
    hits = sum(1 for s in st.window if s.score >= params.threshold)

    if st.phase == Phase.CONFIRMED:
        return StepResult(state=st, alerts=_step_confirmed(st, c, score, params, now), score=score, admission=verdict)

    if st.phase == Phase.CLEARED:
        if st.cooldown_until is not None and c.capture_time < st.cooldown_until:
            return StepResult(state=st, score=score, admission=verdict)  # cooling down: votes collect, nothing opens
        st.phase, st.cooldown_until = Phase.IDLE, None

    # idle or suspected
    if hits == 0:
        st.phase, st.suspect_seq, st.suspect_since = Phase.IDLE, None, None
        return StepResult(state=st, score=score, admission=verdict)
    # the suspicion starts at the earliest capture among the hits: frames of several producer epochs
    # can interleave with capture times out of order (a restart, a forged frame), and first_seen must
    # never be after the confirming frame
    earliest = min((s for s in st.window if s.score >= params.threshold), key=lambda s: s.at)
    if st.suspect_since is None or earliest.at < st.suspect_since:
        st.suspect_seq, st.suspect_since = earliest.seq, earliest.at
    if hits < params.confirm_k:
        st.phase = Phase.SUSPECTED
        return StepResult(state=st, score=score, admission=verdict)

    return StepResult(state=st, alerts=[_confirm(st, c, params, now)], score=score, admission=verdict)


def tick(
    state: CameraState, params: ConfirmParams, now: datetime, *, acknowledged: bool = False
) -> StepResult:
    """Timer path: record an acknowledgement and escalate an open incident that has been confirmed
    for ``escalate_after_s`` of processing time (also when its camera stopped sending frames)."""
    st = _copy_state(state)
    if st.incident is not None and acknowledged:
        st.incident.acknowledged = True
    esc = _maybe_escalate(st, params, now, wall_now=now)
    return StepResult(state=st, alerts=[esc] if esc else [])


def acknowledge(state: CameraState, incident: str) -> CameraState:
    """Mark the open incident acknowledged (no escalation afterwards); other ids are ignored."""
    st = _copy_state(state)
    if st.incident is not None and st.incident.id == incident:
        st.incident.acknowledged = True
    return st
