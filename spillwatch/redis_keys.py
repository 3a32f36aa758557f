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
camera monitor (processors/outage_store.py)
``P:outage:cam:<camera>``              OutageState JSON of a configured camera (no TTL: an open
                                       outage is never forgotten)
``P:outage:open``                      set of cameras with an open outage
``P:outage:outbox``                    hash ``<incident>:<state>`` -> CameraAlert JSON, not yet published
``P:outage:sent:<incident>:<state>``   "published" marker (TTL ``aggregator.state_ttl_s``)
``P:outage:claim:<incident>:<state>``  short lease of the process publishing that outbox entry
classifier (processors/app.py)
``P:frame:<camera>:<seq>``             JPEG of a suspicious frame, for the evidence snapshot (short TTL)
alerting (alerting/acks.py, alerting/store.py)
``P:ack:<incident>``                   acknowledgement hash (by, at, note, label); read by the
                                       aggregator (no escalation) and the archiver (labels)
``P:alerting:jobs``                    hash job id -> page job JSON
``P:alerting:queue``                   zset job id -> when its next try is due
``P:alerting:page:<job>``              idempotency key of one page (inflight/sent/dead)
``P:alerting:incident:<id>``           hash: kind (spill, camera), camera, state, alerts by state
``P:alerting:incident:<id>:pages``     hash ``<state>:<channel>`` -> page record JSON
``P:alerting:escalations``             zset incident id -> when its escalation is due
``P:alerting:pages``                   list of page records (sent or dry-run), newest last
``P:alerting:channel-down:<channel>``   unix time of the channel's first failed try of an outage
console (console/)
``P:console:user:<name>``              hash: role, argon2 password hash, created_at
``P:console:users``                    set of user names
``P:console:session:<sha256>``         hash of a sign-in (user, csrf token); TTL ``console.session_ttl_s``
``P:console:token:<sha256>``           hash of an API token (name, role, created_at)
``P:console:tokens``                   hash token name -> sha256 of the token
``P:console:login-failures:<name>``    failed sign-ins (TTL ``console.login_lockout_s``)
``P:console:incident:<id>``            hash: the incident as the console shows it (alerts by state,
                                       verdict, spill map of the confirming frame)
``P:console:incidents``                zset incident id -> confirmed_at (unix s)
``P:console:open``                     zset of open (not cleared) incidents -> confirmed_at
``P:console:cam-incidents:<camera>``   zset incident id -> confirmed_at, one camera
``P:console:timeline:<id>``            zset of score samples around the confirmation (score = seq)
``P:console:camera:<camera>``          latest CameraHealth JSON of a camera
``P:console:cameras``                  set of camera ids seen on ``camera-health``
suppression (spillwatch/suppression_store.py; docs/suppression.md)
``P:supp:entries``                     hash entry id -> suppression Entry JSON (every camera)
``P:supp:version``                     counter, +1 on every change of the entries (workers re-read then)
``P:supp:fired``                       hash entry id -> frames it suppressed (aggregator)
``P:supp:fired-at``                    hash entry id -> capture time of the last frame it suppressed
``P:supp:learn:<incident>``            list of the incident's first frames with firing cells and
                                       their looks (aggregator; TTL ``suppression.learn_ttl_s``)
``P:supp:outcome:<incident>``          what the incident's verdict did to the suppressions (JSON)
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

    # ------------------------------------------------------------------ camera monitor
    def outage_state(self, camera: str) -> str:
        return f"{self.prefix}:outage:cam:{camera}"

    @property
    def outage_open(self) -> str:
        return f"{self.prefix}:outage:open"

    @property
    def outage_outbox(self) -> str:
        return f"{self.prefix}:outage:outbox"

    def outage_sent(self, event_key: str) -> str:
        return f"{self.prefix}:outage:sent:{event_key}"

    def outage_claim(self, event_key: str) -> str:
        return f"{self.prefix}:outage:claim:{event_key}"

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

    # ------------------------------------------------------------------ console
    @property
    def console(self) -> str:
        return f"{self.prefix}:console"

    def console_user(self, name: str) -> str:
        return f"{self.console}:user:{name}"

    @property
    def console_users(self) -> str:
        return f"{self.console}:users"

    def console_session(self, digest: str) -> str:
        return f"{self.console}:session:{digest}"

    def console_token(self, digest: str) -> str:
        return f"{self.console}:token:{digest}"

    @property
    def console_tokens(self) -> str:
        return f"{self.console}:tokens"

    def console_login_failures(self, name: str) -> str:
        return f"{self.console}:login-failures:{name}"

    def console_incident(self, incident_id: str) -> str:
        return f"{self.console}:incident:{incident_id}"

    @property
    def console_incidents(self) -> str:
        return f"{self.console}:incidents"

    @property
    def console_open(self) -> str:
        return f"{self.console}:open"

    def console_camera_incidents(self, camera: str) -> str:
        return f"{self.console}:cam-incidents:{camera}"

    def console_timeline(self, incident_id: str) -> str:
        return f"{self.console}:timeline:{incident_id}"

    def console_camera(self, camera: str) -> str:
        return f"{self.console}:camera:{camera}"

    @property
    def console_cameras(self) -> str:
        return f"{self.console}:cameras"

    # ------------------------------------------------------------------ suppression
    @property
    def supp(self) -> str:
        return f"{self.prefix}:supp"

    @property
    def supp_entries(self) -> str:
        return f"{self.supp}:entries"

    @property
    def supp_version(self) -> str:
        return f"{self.supp}:version"

    @property
    def supp_fired(self) -> str:
        return f"{self.supp}:fired"

    @property
    def supp_fired_at(self) -> str:
        return f"{self.supp}:fired-at"

    def supp_learn(self, incident_id: str) -> str:
        return f"{self.supp}:learn:{incident_id}"

    def supp_outcome(self, incident_id: str) -> str:
        return f"{self.supp}:outcome:{incident_id}"

    # ------------------------------------------------------------------ namespace
    @property
    def everything(self) -> str:
        """SCAN pattern of every key of this namespace."""
        return f"{self.prefix}:*"
