"""Redis key names: the one place where every stage finds the keys another stage writes.

All keys live under ``settings.redis.key_prefix`` (``P``); a replay or a test uses its own prefix,
so namespaces never touch. Who writes what:

=====================================  =========================================================
aggregator (processors/state_store.py)
``P:agg:cam:<camera>``                 CameraState JSON (TTL ``aggregator.state_ttl_s``)
``P:agg:open``                         set of cameras with an open (confirmed) incident
``P:agg:outbox``                       hash ``<incident>:<state>`` -> SpillAlert JSON, not yet published
``P:agg:sent:<incident>:<state>``      "published" marker (dedupe record)
``P:agg:claim:<incident>:<state>``     short lease of the process publishing that outbox entry
classifier (processors/app.py)
``P:frame:<camera>:<seq>``             JPEG of a suspicious frame, for the evidence snapshot (short TTL)
alerting (alerting/acks.py, alerting/store.py)
``P:ack:<incident>``                   acknowledgement hash (by, at, note, label); read by the
                                       aggregator (no escalation) and the archiver (labels)
``P:alerting:jobs``                    hash job id -> page job JSON
``P:alerting:queue``                   zset job id -> when its next try is due
``P:alerting:page:<job>``              idempotency key of one page (inflight/sent/dead)
``P:alerting:incident:<id>``           hash: camera, state, alerts by state
``P:alerting:incident:<id>:pages``     hash ``<state>:<channel>`` -> page record JSON
``P:alerting:escalations``             zset incident id -> when its escalation is due
``P:alerting:pages``                   list of page records (sent or dry-run), newest last
``P:alerting:channel-down:<channel>``   unix time of the channel's first failed try of an outage
=====================================  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix (``settings.redis.key_prefix``)."""

    prefix: str

    # ------------------------------------------------------------------ aggregator
    def agg_state(self, camera: str) -> str:
        return f"{self.prefix}:agg:cam:{camera}"

    @property
    def agg_open(self) -> str:
        return f"{self.prefix}:agg:open"

    @property
    def agg_outbox(self) -> str:
        return f"{self.prefix}:agg:outbox"

    def agg_sent(self, event_key: str) -> str:
        return f"{self.prefix}:agg:sent:{event_key}"

    def agg_claim(self, event_key: str) -> str:
        return f"{self.prefix}:agg:claim:{event_key}"

    # ------------------------------------------------------------------ classifier
    def evidence_frame(self, camera: str, seq: int) -> str:
        return f"{self.prefix}:frame:{camera}:{seq}"

    # ------------------------------------------------------------------ alerting
    def ack(self, incident_id: str) -> str:
        return f"{self.prefix}:ack:{incident_id}"

    @property
    def ack_pattern(self) -> str:
        """SCAN pattern of every acknowledgement."""
        return f"{self.prefix}:ack:*"

    def incident_of_ack_key(self, key: str) -> str:
        return key.rsplit(":ack:", 1)[-1]

    @property
    def alerting(self) -> str:
        return f"{self.prefix}:alerting"

    @property
    def alerting_jobs(self) -> str:
        return f"{self.alerting}:jobs"

    @property
    def alerting_queue(self) -> str:
        return f"{self.alerting}:queue"

    @property
    def alerting_escalations(self) -> str:
        return f"{self.alerting}:escalations"

    @property
    def alerting_pages(self) -> str:
        return f"{self.alerting}:pages"

    def alerting_page(self, job_id: str) -> str:
        return f"{self.alerting}:page:{job_id}"

    def alerting_incident(self, incident_id: str) -> str:
        return f"{self.alerting}:incident:{incident_id}"

    def alerting_incident_pages(self, incident_id: str) -> str:
        return f"{self.alerting_incident(incident_id)}:pages"

    def alerting_channel_down(self, channel: str) -> str:
        return f"{self.alerting}:channel-down:{channel}"

    # ------------------------------------------------------------------ namespace
    @property
    def everything(self) -> str:
        """SCAN pattern of every key of this namespace."""
        return f"{self.prefix}:*"
