"""Redis state of the alerting service: the durable page queue, idempotency keys, incidents,
the escalation schedule. Every alerting instance shares it, so instances can scale out and a
restarted one picks up where a crashed one stopped.

Keys: ``P:alerting:*`` of spillwatch/redis_keys.py (the shared contract): the page jobs and their
due times, one idempotency key per page (``inflight:<owner>`` with a TTL of ``inflight_lease_s``
while a try runs — it expires if the process dies, so a restart retries instead of skipping —,
``sent:<time>`` after a success, ``dead:<reason>`` after the last try), incidents with their page
records, the escalation schedule, the page log and, per channel, when its current outage began.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alerting.kinds import Alert, kind_of, parse_alert
from alerting.routing import parse_job_id
from spillwatch.events import EventError
from spillwatch.redis_keys import RedisKeys

PAGES_LOG_MAX = 10_000

# Claim a due job: skip it if already done, report "busy" if another run holds it, else take an
# in-flight lease and push its due time to the lease end (a crash then retries it after the lease).
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then
  local kind = string.sub(v, 1, 5)
  if kind == 'sent:' or kind == 'dead:' then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
    return 'done'
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + ttl / 1000.0, ARGV[1])
  return 'busy'
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'gone'
end
redis.call('SET', KEYS[1], 'inflight:' .. ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[3]) / 1000.0, ARGV[1])
return 'claimed'
"""

_RECORD = """
redis.call('HSET', KEYS[1], 'camera_id', ARGV[1], 'alert:' .. ARGV[2], ARGV[3], 'kind', ARGV[5])
local cur = redis.call('HGET', KEYS[1], 'state')
if ARGV[2] == 'cleared' or ARGV[2] == 'recovered' then
  redis.call('HSET', KEYS[1], 'state', ARGV[2])
elseif ARGV[2] == 'escalated' then
  redis.call('HSET', KEYS[1], 'escalated', '1')
  if cur ~= 'cleared' then redis.call('HSET', KEYS[1], 'state', 'escalated') end
elseif not cur then
  redis.call('HSET', KEYS[1], 'state', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# Take a due escalation: push it a lease into the future (a crash before it is finished retries
# it), and let exactly one caller have it.
_TAKE_ESCALATION = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]) / 1000.0, ARGV[1])
  return 1
end
return 0
"""

# Release our in-flight lease only (another run may hold the key after our lease expired).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Job:
    job_id: str
    channel: str
    alert_json: str
    tries: int = 0
    enqueued_at: float = 0.0
    last_reason: str = ""
    kind: str = "spill"  # alerting.kinds: "spill" or "camera" (jobs queued before kinds existed: spill)

    @property
    def alert(self) -> Alert:
        return parse_alert(self.alert_json, self.kind)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Job:
        return cls(**json.loads(raw))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _outcome_record(job: Job, status: str, now: float, *, tries: int, reason: str) -> dict[str, Any]:
    """The audit record of a page's final outcome (kept per incident and in the pages log).
    Built from the job id, so that a job whose alert cannot be read is still accounted for."""
    incident, state, channel = parse_job_id(job.job_id)
    try:
        camera: str | None = job.alert.camera_id
    except (EventError, ValueError):
        camera = None
    return {
        "kind": job.kind,
        "incident_id": incident,
        "camera_id": camera,
        "state": state,
        "channel": channel,
        "status": status,
        "at": _iso(now),
        "tries": tries,
        "reason": reason,
    }


class AlertStore:
    def __init__(self, redis: Any, key_prefix: str, *, idempotency_ttl_s: int, lease_s: float) -> None:
        self.r = redis
        self.key_prefix = key_prefix
        self.keys = RedisKeys(key_prefix)
        self.ttl = idempotency_ttl_s
        self.lease_ms = int(lease_s * 1000)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._record = redis.register_script(_RECORD)
        self._take_esc = redis.register_script(_TAKE_ESCALATION)

    # ------------------------------------------------------------------ keys
    @property
    def jobs_key(self) -> str:
        return self.keys.alerting_jobs

    @property
    def queue_key(self) -> str:
        return self.keys.alerting_queue

    @property
    def escalations_key(self) -> str:
        return self.keys.alerting_escalations

    @property
    def pages_key(self) -> str:
        return self.keys.alerting_pages

    def page_key(self, job_id: str) -> str:
        return self.keys.alerting_page(job_id)

    def incident_key(self, incident_id: str) -> str:
        return self.keys.alerting_incident(incident_id)

    # ------------------------------------------------------------------ incidents
    def record_alert(self, alert: Alert) -> None:
        """Store the alert and its kind; the incident's state only moves forward (a redelivered
        ``confirmed`` never reopens a cleared incident, nor ``offline`` a recovered outage)."""
        self._record(
            keys=[self.incident_key(alert.incident_id)],
            args=[alert.camera_id, alert.state.value, alert.model_dump_json(), self.ttl, kind_of(alert)],
        )

    def incident(self, incident_id: str) -> dict[str, str]:
        return self.r.hgetall(self.incident_key(incident_id))

    def incident_pages(self, incident_id: str) -> dict[str, dict[str, Any]]:
        raw = self.r.hgetall(self.keys.alerting_incident_pages(incident_id))
        return {k: json.loads(v) for k, v in raw.items()}

    def mark_escalated(self, incident_id: str) -> None:
        self.r.hset(self.incident_key(incident_id), "escalated", "1")

    # ------------------------------------------------------------------ page queue
    def enqueue(self, job: Job, due: float) -> bool:
        """Durably queue a page unless it was already sent/dead-lettered or is queued. True if queued now."""
        state = self.r.get(self.page_key(job.job_id))
        if state and (state.startswith("sent:") or state.startswith("dead:")):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(self.jobs_key, job.job_id, job.to_json())
        pipe.zadd(self.queue_key, {job.job_id: due}, nx=True)
        added, _ = pipe.execute()
        return bool(added)

    def due_jobs(self, now: float, limit: int) -> list[str]:
        if limit <= 0:
            return []
        return self.r.zrangebyscore(self.queue_key, "-inf", now, start=0, num=limit)

    def next_due(self) -> float | None:
        first = self.r.zrange(self.queue_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def claim(self, job_id: str, owner: str, now: float) -> str:
        """'claimed', 'done' (already sent/dead), 'busy' (another run holds it) or 'gone'."""
        return self._claim(keys=[self.page_key(job_id), self.queue_key, self.jobs_key], args=[job_id, owner, self.lease_ms, now])

    def any_pending(self, job_ids: list[str]) -> bool:
        """Whether any of these pages is still queued (not yet sent or dead-lettered)."""
        return any(self.r.hexists(self.jobs_key, j) for j in job_ids)

    def postpone(self, job_id: str, due: float) -> None:
        self.r.zadd(self.queue_key, {job_id: due}, xx=True)

    def load_job(self, job_id: str) -> Job | None:
        """The queued job; raises ValueError when its stored JSON is unreadable (a poison job)."""
        raw = self.r.hget(self.jobs_key, job_id)
        if not raw:
            return None
        try:
            return Job.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"unreadable page job {job_id!r}: {type(exc).__name__}: {exc}") from exc

    def raw_job(self, job_id: str) -> str | None:
        return self.r.hget(self.jobs_key, job_id)

    def page_state(self, job_id: str) -> str | None:
        return self.r.get(self.page_key(job_id))

    def _page_record(self, pipe: Any, job: Job, record: dict[str, Any]) -> None:
        key = self.keys.alerting_incident_pages(record["incident_id"])
        pipe.hset(key, f"{record['state']}:{record['channel']}", json.dumps(record, separators=(",", ":")))
        pipe.expire(key, self.ttl)

    def _finish(self, job: Job, page_state: str, record: dict[str, Any]) -> Any:
        """Open a transaction that marks the job's page final and drops it from the queue (caller executes)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.page_key(job.job_id), page_state, ex=self.ttl)
        pipe.zrem(self.queue_key, job.job_id)
        pipe.hdel(self.jobs_key, job.job_id)
        self._page_record(pipe, job, record)
        return pipe

    def complete_sent(self, job: Job, owner: str, now: float, *, tries: int, reason: str, dry_run: bool) -> dict[str, Any]:
        record = _outcome_record(job, "sent", now, tries=tries, reason=reason)
        record["dry_run"] = dry_run
        pipe = self._finish(job, f"sent:{_iso(now)}", record)
        pipe.rpush(self.pages_key, json.dumps(record, separators=(",", ":")))
        pipe.ltrim(self.pages_key, -PAGES_LOG_MAX, -1)
        pipe.execute()
        return record

    def schedule_retry(self, job: Job, owner: str, due: float, *, tries: int, reason: str) -> None:
        updated = dataclasses.replace(job, tries=tries, last_reason=reason)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.jobs_key, job.job_id, updated.to_json())
        pipe.zadd(self.queue_key, {job.job_id: due})
        pipe.execute()
        self._release(keys=[self.page_key(job.job_id)], args=[f"inflight:{owner}"])

    def complete_dead(self, job: Job, now: float, *, tries: int, reason: str) -> None:
        """Final: the page was given up (dead-lettered by the caller)."""
        record = _outcome_record(job, "dead", now, tries=tries, reason=reason)
        pipe = self._finish(job, f"dead:{reason[:200]}", record)
        pipe.execute()

    def release(self, job: Job, owner: str, due: float) -> None:
        """Give a claimed job back untouched (e.g. the dead-letter topic was unreachable)."""
        self.r.zadd(self.queue_key, {job.job_id: due})
        self._release(keys=[self.page_key(job.job_id)], args=[f"inflight:{owner}"])

    def recent_pages(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.pages_key, -limit, -1)]

    # ------------------------------------------------------------------ channel outages
    def channel_failed(self, channel: str, now: float) -> float:
        """Record a failed try on ``channel``; returns when its current outage began."""
        key = self.keys.alerting_channel_down(channel)
        self.r.set(key, repr(now), nx=True, ex=self.ttl)
        raw = self.r.get(key)
        return float(raw) if raw is not None else now

    def channel_ok(self, channel: str) -> None:
        """A page went through on ``channel``: its outage (if any) is over."""
        self.r.delete(self.keys.alerting_channel_down(channel))

    def channel_down_since(self, channel: str) -> float | None:
        raw = self.r.get(self.keys.alerting_channel_down(channel))
        return float(raw) if raw is not None else None

    # ------------------------------------------------------------------ escalation
    def schedule_escalation(self, incident_id: str, due: float) -> None:
        """Schedule (or bring forward, never postpone) the escalation check of an incident."""
        self.r.zadd(self.escalations_key, {incident_id: due}, lt=True)

    def cancel_escalation(self, incident_id: str) -> None:
        self.r.zrem(self.escalations_key, incident_id)

    def take_due_escalations(self, now: float, limit: int = 100) -> list[str]:
        """Due incidents, each handed to one caller; call finish_escalation when handled."""
        out = []
        for inc in self.r.zrangebyscore(self.escalations_key, "-inf", now, start=0, num=limit):
            if self._take_esc(keys=[self.escalations_key], args=[inc, now, self.lease_ms]):
                out.append(inc)
        return out

    def finish_escalation(self, incident_id: str) -> None:
        self.r.zrem(self.escalations_key, incident_id)

    def escalation_due_at(self, incident_id: str) -> float | None:
        return self.r.zscore(self.escalations_key, incident_id)
