"""Learned suppression in the processors: the worker's per-frame step and the aggregator's recorder.

Rules: spillwatch/suppression.py; Redis contract: spillwatch/suppression_store.py; docs/suppression.md.

* Worker (:class:`FrameSuppressor`, called once per classified frame by processors/classifier.py):
  for the frame's firing map cells only, measure their looks on the already-decoded model input
  and mark the cells an active entry of the camera matches (``Classification.looks`` and
  ``.suppressed``). No I/O on that path: the entries come from a :class:`SuppressionCache` that the
  worker's timer refreshes every ``suppression.refresh_s`` (one Redis GET of the version counter;
  the entries are read again only when it moved), and that is loaded once before the first frame.
  Redis away: the cache keeps what it had (entries still expire by their time).
* Aggregator (:class:`SuppressionRecorder`, after each taken classification): counts the frames
  each entry suppressed (``fired``) and keeps the frames of the camera's suspected or open incident
  (the first ``suppression.learn_max_frames`` with unsuppressed firing cells) for a later
  false-alarm verdict. Best effort, after the state commit: a crash in between loses one frame's
  statistics, never a decision.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import numpy as np

from processors.confirmation import CameraState, Phase, StepResult, incident_id
from spillwatch import metrics
from spillwatch.events import AlertState, Classification
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys
from spillwatch.suppression import Entry, active_for, cell_looks, firing_cells, grid_of, match, observation_of
from spillwatch.suppression_store import parse_entries

log = get_logger("processors.suppression")

SUSPECT_LEARN_TTL_S = 3600  # frames of a suspicion that never confirms are dropped after this


class SuppressionCache:
    """The entries every camera has, as this process last read them (replaced whole, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_camera: dict[str, list[Entry]] = {}
        self.version: int | None = None

    def replace(self, entries: list[Entry], version: int | None) -> None:
        by_camera: dict[str, list[Entry]] = {}
        for e in entries:
            by_camera.setdefault(e.camera_id, []).append(e)
        with self._lock:
            self._by_camera, self.version = by_camera, version

    def for_camera(self, camera: str, now: datetime) -> list[Entry]:
        with self._lock:
            entries = self._by_camera.get(camera, [])
        return active_for(entries, camera, now) if entries else []

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_camera.values())


def _version(raw: Any) -> int:
    try:
        return int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return 0


def load_now(cache: SuppressionCache, redis: Any, keys: RedisKeys) -> bool:
    """Fill the cache with a sync client (worker start, before the first frame); False if Redis failed."""
    try:
        version = _version(redis.get(keys.supp_version))
        cache.replace(parse_entries(redis.hgetall(keys.supp_entries)), version)
    except Exception as exc:  # noqa: BLE001 - no suppression is the fail-open state
        log.warning("could not read the suppressions; classifying without until the next refresh", error=repr(exc))
        return False
    log.info("suppressions loaded", version=version, entries=len(cache))
    return True


async def refresh(cache: SuppressionCache, redis: Any, keys: RedisKeys) -> bool:
    """Re-read the entries if their version moved (async client); True when the cache changed."""
    version = _version(await redis.get(keys.supp_version))
    if version == cache.version:
        return False
    cache.replace(parse_entries(await redis.hgetall(keys.supp_entries)), version)
    log.info("suppressions loaded", version=version, entries=len(cache))
    return True


async def refresh_suppressions(cache: SuppressionCache, redis: Any, keys: RedisKeys) -> None:
    """The worker's timer: :func:`refresh`, a Redis error logged (the next tick retries)."""
    try:
        await refresh(cache, redis, keys)
    except Exception as exc:  # noqa: BLE001 - keep the entries we have
        log.warning("could not refresh the suppressions; keeping the ones loaded", error=repr(exc), version=cache.version)


def suppressor_for(settings: Any, cache: SuppressionCache, map_threshold: float) -> FrameSuppressor | None:
    """The worker's step for ``settings`` (None when ``suppression.enabled`` is off), its cache
    loaded once now."""
    if not settings.suppression.enabled:
        return None
    import redis

    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        load_now(cache, client, RedisKeys(settings.redis.key_prefix))
    finally:
        client.close()
    return FrameSuppressor(cache, margin=settings.suppression.margin, map_threshold=map_threshold)


class FrameSuppressor:
    """The worker's per-frame step (see the module docstring)."""

    def __init__(self, cache: SuppressionCache, *, margin: float, map_threshold: float) -> None:
        self.cache = cache
        self.margin = margin
        self.map_threshold = map_threshold

    def annotate(self, event: Classification, image_rgb: np.ndarray, min_prob: float = 0.0) -> Classification:
        """``event`` with the looks of its firing cells and the cells an entry matched; on any error
        unchanged (fail-open: the frame counts as without suppression).

        A frame whose map fires nowhere (a passer-by hides part of a learned look-alike and its cells
        dip under the map threshold, while the frame score stays above the decision threshold) is
        localised by its strongest cell, on a camera that has entries: when that cell's place and look
        match an entry it is suppressed like a firing cell (the aggregator then scores the frame over
        the rest of the map, confirmation.effective_score). Nothing is measured into ``looks`` for it,
        and a frame under ``min_prob`` (the worker passes the camera's warm level, at or below its clear
        level: such a frame counts as clear whatever is suppressed) is not measured at all."""
        try:
            cells = firing_cells(event.spill_map, self.map_threshold)
            grid = grid_of(event.spill_map)
            if grid is None:
                return event
            if not cells:
                return self._strongest_cell(event, image_rgb, grid) if event.spill_prob >= min_prob else event
            looks = cell_looks(image_rgb, cells, grid)
            entries = self.cache.for_camera(event.camera_id, event.classified_at)
            suppressed = match(entries, looks, grid, self.margin) if entries else []
            return event.model_copy(update={"looks": looks, "suppressed": suppressed or None})
        except Exception as exc:  # noqa: BLE001 - never cost a classification
            log.warning("suppression step failed; frame left unsuppressed", camera=event.camera_id, seq=event.seq, error=repr(exc))
            return event

    def _strongest_cell(self, event: Classification, image_rgb: np.ndarray, grid: tuple[int, int]) -> Classification:
        entries = self.cache.for_camera(event.camera_id, event.classified_at)
        strongest = firing_cells(event.spill_map, 1.0 / 255.0, limit=1)  # the strongest non-zero cell
        if not entries or not strongest:
            return event
        suppressed = match(entries, cell_looks(image_rgb, strongest, grid), grid, self.margin)
        return event.model_copy(update={"suppressed": suppressed}) if suppressed else event


def learning_incident(state: CameraState) -> str | None:
    """The incident a frame belongs to for learning: the open one, or the one a suspicion would
    confirm as (its id is fixed by the first suspicious frame)."""
    if state.phase == Phase.CONFIRMED and state.incident is not None:
        return state.incident.id
    if state.phase == Phase.SUSPECTED and state.suspect_seq is not None and state.suspect_since is not None:
        return incident_id(state.camera_id, state.suspect_seq, state.suspect_since)
    return None


class SuppressionRecorder:
    """The aggregator's part (module docstring); ``redis`` is the aggregator's async client."""

    def __init__(self, redis: Any, key_prefix: str, settings: Any) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)
        self.cfg = settings

    async def after(self, c: Classification, result: StepResult) -> None:
        if result.duplicate:
            return
        try:
            await self._record(c, result)
        except Exception as exc:  # noqa: BLE001 - statistics; the decision is committed already
            log.warning("suppression statistics not recorded", camera=c.camera_id, seq=c.seq, error=repr(exc))

    async def _record(self, c: Classification, result: StepResult) -> None:
        inc = learning_incident(result.state)
        obs = observation_of(c) if inc else None
        confirmed = any(a.state == AlertState.CONFIRMED for a in result.alerts)
        if c.suppressed:
            metrics.FRAMES_SUPPRESSED.labels(c.camera_id).inc()
        if not c.suppressed and obs is None and not confirmed:
            return
        async with self.r.pipeline(transaction=False) as pipe:
            for s in c.suppressed or []:
                pipe.hincrby(self.keys.supp_fired, s.entry, 1)
                pipe.hset(self.keys.supp_fired_at, s.entry, c.capture_time.isoformat())
            if inc is not None:
                key = self.keys.supp_learn(inc)
                if obs is not None:
                    pipe.rpush(key, obs.model_dump_json())
                    pipe.ltrim(key, 0, self.cfg.learn_max_frames - 1)  # keep the first ones
                open_ = result.state.phase == Phase.CONFIRMED
                pipe.expire(key, self.cfg.learn_ttl_s if open_ else SUSPECT_LEARN_TTL_S)
            await pipe.execute()
