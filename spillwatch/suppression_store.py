"""Learned suppressions in Redis (a CONTRACT shared by workers, the aggregator, the console and the CLI).

Keys (spillwatch/redis_keys.py): ``P:supp:entries`` (hash entry id -> Entry JSON), ``P:supp:version``
(+1 on every change: workers re-read the entries when it moved), ``P:supp:fired`` / ``P:supp:fired-at``
(frames each entry suppressed, the last one's capture time: written by the aggregator),
``P:supp:learn:<incident>`` (the incident's first frames with firing cells: written by the
aggregator) and ``P:supp:outcome:<incident>`` (what the verdict did).

The one signal every verdict gives: ``spillwatch label INCIDENT --true|--false``,
``spillwatch ack INCIDENT --true|--false`` and the console's Spill confirmed / False alarm buttons all
call :meth:`SuppressionStore.apply_verdict` (besides writing the archive label / ack hash as before).
A false alarm becomes an entry at once (no archiver involved); a real spill never creates one and
removes any entry that was learned from that incident (a changed mind).

Sync client (``redis.Redis``); the async writers (aggregator, worker refresh) live in
processors/suppression.py and use the same keys and models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.exceptions import WatchError

from spillwatch.events import utcnow
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys
from spillwatch.suppression import Entry, Observation, Outcome, cell_looks, firing_cells, grid_of, plan_false_alarm

log = get_logger("spillwatch.suppression_store")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def parse_entries(raw: dict[Any, Any]) -> list[Entry]:
    """Entries of an ``HGETALL P:supp:entries``; an unreadable one is skipped (logged), never fatal."""
    out: list[Entry] = []
    for k, v in raw.items():
        try:
            out.append(Entry.model_validate_json(v))
        except ValueError as exc:
            log.warning("unreadable suppression entry skipped", entry=_s(k)[:80], error=str(exc)[:200])
    return out


@dataclass(frozen=True)
class Listed:
    """An entry as ``spillwatch suppressions list`` and the console show it."""

    entry: Entry
    fired: int
    last_fired: datetime | None
    expired: bool

    def as_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "id": e.id, "camera_id": e.camera_id, "incident_id": e.incident_id, "by": e.by, "source": e.source,
            "created_at": e.created_at.isoformat(), "expires_at": e.expires_at.isoformat(),
            "confirmed_at": e.confirmed_at.isoformat() if e.confirmed_at else None, "confirmed_by": e.confirmed_by,
            "cells": sorted(e.cell_ids), "grid": list(e.grid), "area": round(e.area, 4), "frames": e.frames,
            "model_version": e.model_version, "forced": e.forced, "warning": e.warning,
            "fired": self.fired, "last_fired": self.last_fired.isoformat() if self.last_fired else None,
            "expired": self.expired,
        }


class SuppressionStore:
    def __init__(self, redis: Any, key_prefix: str, settings: Any) -> None:
        """``settings``: the ``suppression`` section (spillwatch.settings.SuppressionSettings)."""
        self.r = redis
        self.keys = RedisKeys(key_prefix)
        self.cfg = settings

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[Entry]:
        return parse_entries(self.r.hgetall(self.keys.supp_entries))

    def get(self, entry_id: str) -> Entry | None:
        raw = self.r.hget(self.keys.supp_entries, entry_id)
        return parse_entries({entry_id: raw})[0] if raw else None

    def listing(self, camera: str | None = None, *, now: datetime | None = None, include_expired: bool = True) -> list[Listed]:
        """Entries with their counts, by camera; entries expired more than a week ago are purged first."""
        now = now or utcnow()
        self.purge_expired(now)
        fired = {_s(k): int(v) for k, v in self.r.hgetall(self.keys.supp_fired).items()}
        at = {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.supp_fired_at).items()}
        out = []
        for e in sorted(self.entries(), key=lambda e: (e.camera_id, e.created_at, e.id)):
            if camera is not None and e.camera_id != camera:
                continue
            if not include_expired and not e.active(now):
                continue
            last = datetime.fromisoformat(at[e.id]) if e.id in at else None
            out.append(Listed(e, fired.get(e.id, 0), last, not e.active(now)))
        return out

    def observations(self, incident_id: str) -> list[Observation]:
        out = []
        for raw in self.r.lrange(self.keys.supp_learn(incident_id), 0, -1):
            try:
                out.append(Observation.model_validate_json(raw))
            except ValueError:
                continue
        return out

    def outcome(self, incident_id: str) -> Outcome | None:
        raw = self.r.get(self.keys.supp_outcome(incident_id))
        try:
            return Outcome.model_validate_json(raw) if raw else None
        except ValueError:
            return None

    # ------------------------------------------------------------------ changing
    def remove(self, entry_id: str) -> Entry | None:
        """Remove an entry (it stops matching on every worker within ``suppression.refresh_s``)."""
        entry = self.get(entry_id)
        if entry is None:
            return None
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.supp_entries, entry_id)
            pipe.hdel(self.keys.supp_fired, entry_id)
            pipe.hdel(self.keys.supp_fired_at, entry_id)
            pipe.incr(self.keys.supp_version)
            pipe.execute()
        log.debug("suppression removed", entry=entry_id, camera=entry.camera_id, incident=entry.incident_id)
        return entry

    def purge_expired(self, now: datetime | None = None, keep_s: float = 7 * 24 * 3600) -> int:
        """Delete entries expired more than ``keep_s`` ago (they are listed as expired until then)."""
        now = now or utcnow()
        old = [e.id for e in self.entries() if e.expires_at + timedelta(seconds=keep_s) <= now]
        for eid in old:
            self.remove(eid)
        return len(old)

    def apply_verdict(
        self, incident_id: str, is_spill: bool, *, by: str = "", source: str = "cli", force: bool = False,
        now: datetime | None = None, fallback: Callable[[], list[Observation]] | None = None,
    ) -> Outcome:
        """The verdict's effect on the suppressions (module docstring); recorded for the console."""
        now = (now or utcnow()).astimezone(UTC)
        self.purge_expired(now)
        if is_spill:
            outcome = self._spill(incident_id, by, now)
        elif not self.cfg.enabled:
            outcome = Outcome(incident_id=incident_id, verdict="clean", status="disabled", by=by, at=now,
                              message="suppression is off (suppression.enabled)")
        else:
            outcome = self._false_alarm(incident_id, by, source, force, now, fallback)
        self.r.set(self.keys.supp_outcome(incident_id), outcome.model_dump_json(), ex=self.cfg.learn_ttl_s)
        log.debug("verdict applied to suppressions", incident=incident_id, status=outcome.status, entry=outcome.entry_id,
                 by=by, source=source, area=outcome.area, warning=outcome.warning)
        return outcome

    def learn(
        self, incident_id: str, *, by: str = "", source: str = "cli", force: bool = False, now: datetime | None = None,
        fallback: Callable[[], list[Observation]] | None = None,
    ) -> Outcome:
        """Learn from a false alarm on request (``spillwatch suppressions add``, the console's
        Suppress button), e.g. with ``force`` after the area cap refused it. An incident whose last
        verdict was a real spill is refused: a real spill never creates a suppression.
        ``fallback`` gives the frames when Redis no longer keeps them (the archive's:
        :func:`observations_from_archive`)."""
        last = self.outcome(incident_id)
        if last is not None and last.verdict == "spill":
            return Outcome(incident_id=incident_id, verdict="spill", status="not_suppressed", by=by,
                           at=(now or utcnow()).astimezone(UTC),
                           message="its last verdict was a real spill: label it a false alarm first")
        return self.apply_verdict(incident_id, False, by=by, source=source, force=force, now=now, fallback=fallback)

    def _spill(self, incident_id: str, by: str, now: datetime) -> Outcome:
        mine = [e.id for e in self.entries() if e.incident_id == incident_id]
        for eid in mine:
            self.remove(eid)
        if mine:
            return Outcome(incident_id=incident_id, verdict="spill", status="removed", removed=mine, by=by, at=now,
                           message=f"a real spill: removed the suppression learned from it ({', '.join(mine)})")
        return Outcome(incident_id=incident_id, verdict="spill", status="not_suppressed", by=by, at=now,
                       message="a real spill never creates a suppression")

    def _false_alarm(self, incident_id: str, by: str, source: str, force: bool, now: datetime,
                     fallback: Callable[[], list[Observation]] | None) -> Outcome:
        observations = self.observations(incident_id)
        if not observations and fallback is not None:
            observations = fallback()
        key = self.keys.supp_entries
        for _attempt in range(50):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)  # two verdicts at once must not both pass the area cap
                    existing = parse_entries(pipe.hgetall(key))
                    plan = plan_false_alarm(
                        incident_id, observations, existing, by=by, source=source, now=now, margin=self.cfg.margin,
                        min_frames=self.cfg.learn_min_frames, ttl=timedelta(days=self.cfg.ttl_days),
                        warn_area=self.cfg.warn_area, max_area=self.cfg.max_area, force=force,
                    )
                    if plan.entry is None:
                        pipe.unwatch()
                        return plan.outcome
                    pipe.multi()
                    for e in (plan.entry, *plan.renewed):
                        pipe.hset(key, e.id, e.model_dump_json())
                    pipe.incr(self.keys.supp_version)
                    pipe.execute()
                    return plan.outcome
                except WatchError:
                    continue
        raise RuntimeError("suppression entries kept changing under 50 attempts")


def observations_from_archive(root: Path | str, incident_id: str, model: Any, max_frames: int = 64) -> list[Observation]:
    """An incident's frames as the aggregator would have kept them, recomputed from the archive
    (its incident window, the first ``max_frames`` with firing cells) with ``model``
    (spillwatch.model.SpillModel): for verdicts given after ``suppression.learn_ttl_s``, or when
    Redis lost them. Needs the optional archiver to have kept the frames."""
    from spillwatch.archive import incident_frames

    root = Path(root)
    out: list[Observation] = []
    for f in incident_frames(root, incident_id):
        try:
            x = model.preprocess_jpeg((root / f.file).read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("archived frame unreadable; skipped", file=f.file, error=str(exc)[:200])
            continue
        pred = model.infer(x[None])[0]
        smap = pred.quantised_map()
        cells, grid = firing_cells(smap, model.map_threshold), grid_of(smap)
        if not cells or grid is None:
            continue
        out.append(Observation(camera_id=f.camera, seq=f.seq, capture_time=f.capture_time, grid=grid,
                               model_version=model.version, looks=cell_looks(x, cells, grid)))
        if len(out) >= max_frames:
            break
    return out


def apply_verdict_quietly(settings: Any, incident_id: str, is_spill: bool, *, by: str, source: str) -> tuple[Outcome | None, str | None]:
    """For the CLI verdicts: (outcome, None), or (None, why) when Redis cannot be reached — the
    verdict itself (archive label / ack) stands either way."""
    import redis

    from spillwatch.errors import unreachable_message

    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        store = SuppressionStore(client, settings.redis.key_prefix, settings.suppression)
        return store.apply_verdict(incident_id, is_spill, by=by, source=source), None
    except redis.RedisError as exc:
        return None, unreachable_message(exc) or f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def outcome_line(o: Outcome) -> str:
    """One line for a terminal."""
    extra = f" (warning: {o.warning})" if o.warning and o.status == "created" else ""
    return f"suppression: {o.status}: {o.message}{extra}"


def dumps_listing(items: list[Listed]) -> str:
    return json.dumps([i.as_dict() for i in items], indent=2)
