"""Alerting against hostile input: schema-valid garbage never pages, transitions must make sense
for the incident alerting knows, and one bad job never blocks another (it is dead-lettered with
its reason). Pure checks first, then the real service on the real broker and Redis."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from alerting.receiver import WebhookReceiver
from alerting.routing import job_id
from alerting.store import Job
from alerting.transitions import Check, IncidentFacts, Verdict, check_transition
from spillwatch.events import AlertState, DeadLetter, EventError, SpillAlert
from spillwatch.settings import CameraConfig, Settings
from tests.helpers import consume_all, wait_until
from tests.helpers.alerts import ALERT_T0 as T0
from tests.helpers.alerts import SECRET, configure, make_alert, page_status, publish, running, settled_service

C, E, X = AlertState.CONFIRMED, AlertState.ESCALATED, AlertState.CLEARED


# ---------------------------------------------------------------- the events reject garbage


def _mutated(**changes: Any) -> bytes:
    d = make_alert().model_dump(mode="json")
    for path, value in changes.items():
        node = d
        *head, last = path.split("__")
        for p in head:
            node = node[p]
        node[last] = value
    # json.dumps writes NaN/Infinity literals, as a hostile producer could
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"evidence__peak_prob": float("nan")}, "peak_prob"),
        ({"evidence__peak_prob": float("inf")}, "peak_prob"),
        ({"evidence__peak_prob": -0.5}, "peak_prob"),
        ({"evidence__peak_prob": 1.5}, "peak_prob"),
        ({"evidence__scores": [0.5, float("nan")]}, "scores"),
        ({"evidence__scores": [2.0]}, "scores"),
        ({"evidence__frame_seqs": [-1]}, "frame_seqs"),
        ({"evidence__confirming_seq": -3}, "confirming_seq"),
        ({"evidence__region": {"x0": float("nan"), "y0": 0, "x1": 1, "y1": 1}}, "region"),
        ({"evidence__snapshot_ref": "a\nb.jpg"}, "snapshot_ref"),
        ({"first_seen": "0001-01-01T00:00:00Z"}, "first_seen"),
        ({"confirmed_at": "9999-12-31T23:59:59Z"}, "confirmed_at"),
        ({"event_time": "9999-12-31T23:59:59Z"}, "event_time"),
        ({"incident_id": "../../etc/passwd|confirmed|webhook"}, "incident_id"),
        ({"incident_id": "inc 42"}, "incident_id"),
        ({"incident_id": ".hidden"}, "incident_id"),
        ({"incident_id": "x" * 201}, "incident_id"),
        ({"camera_id": "dock/1"}, "camera_id"),
        ({"camera_id": "dock|1"}, "camera_id"),
        ({"first_seen": (T0 + timedelta(hours=1)).isoformat()}, "before first_seen"),
        ({"cleared_at": (T0 + timedelta(hours=1)).isoformat()}, "cleared_at is set"),
        ({"state": "cleared"}, "needs cleared_at"),
    ],
)
def test_schema_valid_garbage_is_rejected_by_the_event(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(EventError) as err:
        SpillAlert.from_bytes(_mutated(**changes))
    assert complaint in str(err.value)


def test_real_alerts_still_validate() -> None:
    for state in AlertState:
        a = make_alert(state)
        assert SpillAlert.from_bytes(a.to_bytes()) == a
    # ids the aggregator makes: <camera>-<seq>-<hash>, camera ids of the settings' alphabet
    ok = make_alert().model_copy(update={"incident_id": "loading-dock_1:a.b-1733000000123-9f3a1c2e"})
    assert SpillAlert.from_bytes(ok.to_bytes()).incident_id == ok.incident_id


# ---------------------------------------------------------------- the transition rules (pure)


def facts(state: str | None = None, camera: str | None = "dock-1", *seen: str) -> IncidentFacts:
    return IncidentFacts(state=state, camera_id=camera if state else None, seen=frozenset(seen))


NEW = facts()
OPEN = facts("confirmed", "dock-1", "confirmed")
ESCALATED = facts("escalated", "dock-1", "confirmed", "escalated")
CLEARED = facts("cleared", "dock-1", "confirmed", "cleared")
CLEARED_AFTER_ESC = facts("cleared", "dock-1", "confirmed", "escalated", "cleared")


@pytest.mark.parametrize(
    ("state", "known", "verdict"),
    [
        (C, NEW, Verdict.PAGE),
        (C, OPEN, Verdict.DUPLICATE),  # redelivery: never a second page
        (C, CLEARED, Verdict.DUPLICATE),  # a late redelivery never reopens a cleared incident
        (E, NEW, Verdict.REJECT),  # escalated for an incident never confirmed
        (E, OPEN, Verdict.PAGE),
        (E, ESCALATED, Verdict.DUPLICATE),  # alerting escalated it already (same pages)
        (E, CLEARED, Verdict.REJECT),  # nothing after cleared
        (E, CLEARED_AFTER_ESC, Verdict.DUPLICATE),
        (X, NEW, Verdict.REJECT),  # cleared for an incident never confirmed
        (X, OPEN, Verdict.PAGE),
        (X, ESCALATED, Verdict.PAGE),
        (X, CLEARED, Verdict.DUPLICATE),
        (C, facts("escalated", "dock-1", "escalated"), Verdict.REJECT),  # a state without its confirmation
    ],
)
def test_transition_rules(state: AlertState, known: IncidentFacts, verdict: Verdict) -> None:
    got = check_transition(state, "dock-1", known)
    assert got.verdict == verdict, got
    assert (got.reason != "") == (verdict != Verdict.PAGE)


def test_transitions_name_the_camera_of_the_incident_and_a_configured_one() -> None:
    assert check_transition(X, "dock-2", OPEN).verdict == Verdict.REJECT  # another camera's incident
    cams = {"dock-1", "dock-2"}
    assert check_transition(C, "ghost", NEW, cameras=cams) == Check(
        Verdict.REJECT, "unknown camera 'ghost' (not in the configured cameras)"
    )
    assert check_transition(C, "dock-2", NEW, cameras=cams).verdict == Verdict.PAGE
    assert check_transition(C, "ghost", NEW).verdict == Verdict.PAGE  # no cameras configured: any


def test_facts_from_the_incident_record() -> None:
    rec = {"camera_id": "dock-1", "state": "cleared", "escalated": "1", "alert:confirmed": "{}", "alert:cleared": "{}"}
    assert IncidentFacts.from_record(rec) == IncidentFacts("cleared", "dock-1", frozenset({"confirmed", "cleared"}), "spill")
    assert IncidentFacts.from_record(rec | {"kind": "camera"}).kind == "camera"
    assert IncidentFacts.from_record({}) == IncidentFacts()


# ---------------------------------------------------------------- the real service


def _with_cameras(s: Settings, *ids: str) -> Settings:
    return s.model_copy(update={"cameras": [CameraConfig(id=i, source=f"/clips/{i}.mp4") for i in ids]})


def _raw(alert: SpillAlert, **changes: Any) -> bytes:
    d = alert.model_dump(mode="json")
    d.update(changes)
    return json.dumps(d).encode()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_hostile_alerts_page_nothing_and_are_dead_lettered_with_their_reason(stack_settings: Settings) -> None:
    """The issue's garbage (unknown camera, negative/NaN probability, year 0001/9999, cleared or
    escalated for an incident never confirmed, path-like ids, ...) among real alerts: only the real
    transitions page; every hostile record lands in spill-alerts.dlq with its reason."""
    with WebhookReceiver(secret=SECRET) as hook, WebhookReceiver(allow_unsigned=True) as esc:
        s = configure(
            _with_cameras(stack_settings, "dock-1", "dock-2"),
            channels=["webhook"], webhook_url=hook.url, webhook_secret=SECRET,
            escalation_channels=["slack"], slack_webhook_url=esc.url, escalate_after_s=600,
        )
        ok1 = make_alert(incident="inc-ok-1")
        ok2 = make_alert(incident="inc-ok-2").model_copy(update={"camera_id": "dock-2"})
        hostile = [
            _raw(make_alert(incident="inc-ghost"), camera_id="ghost-cam"),
            _mutated(incident_id="inc-neg", evidence__peak_prob=-0.5),
            _mutated(incident_id="inc-nan", evidence__peak_prob=float("nan")),
            _mutated(incident_id="inc-y1", first_seen="0001-01-01T00:00:00Z"),
            _mutated(incident_id="inc-y9999", confirmed_at="9999-12-31T23:59:59Z"),
            make_alert(X, incident="inc-never-cleared").to_bytes(),
            make_alert(E, incident="inc-never-escalated").to_bytes(),
            _mutated(incident_id="../../etc/passwd|confirmed|webhook"),
            _mutated(incident_id="inc-inf", evidence__scores=[float("inf")]),
        ]
        with running(s) as svc:
            publish(s, ok1.to_bytes(), *hostile, key=b"dock-1")
            publish(s, ok2.to_bytes(), make_alert(E, incident="inc-ok-2").model_copy(update={"camera_id": "dock-2"}).to_bytes(),
                    key=b"dock-2")
            wait_until(lambda: page_status(svc, "inc-ok-1", "confirmed:webhook") == "sent", 30)
            # after the real incident cleared: an escalation, a clear from another camera, a reopen
            publish(s, make_alert(X, incident="inc-ok-1").to_bytes(), key=b"dock-1")
            wait_until(lambda: page_status(svc, "inc-ok-1", "cleared:webhook") == "sent", 30)
            publish(
                s,
                make_alert(E, incident="inc-ok-1").to_bytes(),
                _raw(make_alert(X, incident="inc-ok-2"), camera_id="dock-1"),
                make_alert(C, incident="inc-ok-1").to_bytes(),  # redelivered confirmation: nothing
                key=b"dock-1",
            )
            settled_service(svc, s)
        pages = sorted(p["idempotency_key"] for p in hook.snapshot())
        escalations = [p["payload"]["dedup_key"] if "dedup_key" in p["payload"] else p["payload"]["text"] for p in esc.snapshot()]
    assert pages == ["inc-ok-1:cleared", "inc-ok-1:confirmed", "inc-ok-2:confirmed"]
    assert len(escalations) == 1 and "inc-ok-2" in escalations[0]  # the real escalation only
    dead = [DeadLetter.from_bytes(r.value) for r in consume_all(s, s.topics.dead_letter(s.topics.spill_alerts), 20, len(hostile) + 2)]
    reasons = [d.reason for d in dead]
    assert len(dead) == len(hostile) + 2, reasons
    expect = [
        "unknown camera 'ghost-cam'", "peak_prob", "peak_prob", "first_seen", "confirmed_at",
        "cleared for an incident never confirmed", "escalated for an incident never confirmed", "incident_id", "scores",
        "escalated after the incident was cleared", "incident belongs to camera 'dock-2'",
    ]
    for want in expect:
        assert any(want in r for r in reasons), (want, reasons)
    assert all(d.service == "alerting" and d.payload() for d in dead)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_poison_job_and_a_poison_escalation_are_dead_lettered_and_block_nothing(stack_settings: Settings) -> None:
    """Jobs stored by an older version (a NaN probability serialised as null), or corrupted, once
    retried every 5 s forever and stalled the escalations due after them. Now each is dead-lettered
    with its reason at its first pass and the real incident is paged and escalated on time."""
    with WebhookReceiver(secret=SECRET) as hook, WebhookReceiver(allow_unsigned=True) as esc:
        s = configure(
            stack_settings, channels=["webhook"], webhook_url=hook.url, webhook_secret=SECRET,
            escalation_channels=["slack"], slack_webhook_url=esc.url, escalate_after_s=1.0,
        )
        from alerting.service import make_redis
        from alerting.store import AlertStore

        r = make_redis(s.redis.url)
        store = AlertStore(r, s.redis.key_prefix, idempotency_ttl_s=3600, lease_s=30)
        now = time.time()
        null_prob = _raw(make_alert(incident="inc-nan"), evidence={"peak_prob": None}).decode()
        poison = Job(job_id("inc-nan", C, "webhook"), "webhook", null_prob, 0, now)
        assert store.enqueue(poison, due=now)
        r.hset(s.redis.key_prefix + ":alerting:jobs", "broken|confirmed|webhook", "{not json")
        r.zadd(s.redis.key_prefix + ":alerting:queue", {"broken|confirmed|webhook": now})
        r.hset(store.incident_key("inc-nan"), mapping={"camera_id": "dock-1", "state": "confirmed", "alert:confirmed": null_prob})
        store.schedule_escalation("inc-nan", now)
        with running(s) as svc:
            publish(s, make_alert(incident="inc-real").to_bytes())
            wait_until(lambda: page_status(svc, "inc-real", "confirmed:webhook") == "sent", 30)
            wait_until(lambda: page_status(svc, "inc-real", "escalated:slack") == "sent", 30)
            wait_until(lambda: store.page_state(poison.job_id) and store.page_state("broken|confirmed|webhook"), 30)
            settled_service(svc, s)
            health = svc.health()
        r.close()
    assert [p["idempotency_key"] for p in hook.snapshot()] == ["inc-real:confirmed"]
    assert len(esc.snapshot()) == 1 and "inc-real" in esc.snapshot()[0]["payload"]["text"]
    assert health["threads_alive"] and not health["errors"]
    dead = [DeadLetter.from_bytes(x.value) for x in consume_all(s, s.topics.pages_dead_letter, 20, 3)]
    by_job = {(d.extra["incident_id"], d.extra["state"], d.extra["channel"]): d for d in dead}
    assert set(by_job) == {("inc-nan", "confirmed", "webhook"), ("broken", "confirmed", "webhook"), ("inc-nan", "escalated", "*")}
    assert "peak_prob" in by_job[("inc-nan", "confirmed", "webhook")].reason
    assert "unreadable page job" in by_job[("broken", "confirmed", "webhook")].reason
    assert "escalation cannot be handled" in by_job[("inc-nan", "escalated", "*")].reason
    assert by_job[("inc-nan", "confirmed", "webhook")].payload().decode() == null_prob  # nothing lost
