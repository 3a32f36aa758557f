"""The console's pure decisions: incident state merging, camera state, roles, filters, request guards,
redirect targets, the score chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from console.auth import AuthError, Role, allows, check_name, check_password
from console.cameras import effective_state
from console.data import matches
from console.incidents import IncidentRecord, merge_alert, open_first
from console.models import IncidentDetail, TimelinePoint
from console.pages import safe_next
from console.render import overlay, score_chart
from console.security import cross_site_reason, same_site
from spillwatch.events import AlertState, CameraHealth, CameraState
from tests.helpers.alerts import ALERT_T0 as T0
from tests.helpers.alerts import make_alert


def _apply(cur: dict[str, str], state: AlertState) -> tuple[dict[str, str], str | None]:
    fields, change = merge_alert(cur, make_alert(state))
    return cur | fields, change


def test_incident_state_only_moves_forward_and_repeats_change_nothing() -> None:
    cur, change = _apply({}, AlertState.CONFIRMED)
    assert change == "opened" and cur["state"] == "confirmed"
    assert merge_alert(cur, make_alert(AlertState.CONFIRMED)) == ({}, None)  # redelivery
    cur, change = _apply(cur, AlertState.ESCALATED)
    assert change == "escalated" and cur["state"] == "escalated" and cur["escalated"] == "1"
    cur, change = _apply(cur, AlertState.CLEARED)
    assert change == "cleared" and cur["state"] == "cleared" and cur["cleared_at"]
    # an escalation that arrives after the clearing keeps the incident cleared
    late, change = merge_alert({k: v for k, v in cur.items() if k != "alert:escalated"}, make_alert(AlertState.ESCALATED))
    assert late["state"] == "cleared" and change == "updated"
    rec = IncidentRecord.from_hash("inc-42", cur)
    assert not rec.open and rec.escalated and set(rec.alerts) == {"confirmed", "escalated", "cleared"}
    assert rec.evidence.peak_prob == 0.95 and rec.model_version == "effl0-v3"


def test_an_incident_first_seen_as_cleared_is_not_announced_as_opened() -> None:
    fields, change = merge_alert({}, make_alert(AlertState.CLEARED))
    assert change == "cleared" and fields["state"] == "cleared"


def test_open_incidents_come_first() -> None:
    assert open_first(["c", "a"], ["d", "c", "b", "a"]) == ["c", "a", "d", "b"]


def test_camera_state_falls_back_to_offline_when_heartbeats_stop() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    h = CameraHealth(camera_id="c", state=CameraState.ONLINE, fps=2.0, at=now - timedelta(seconds=3))
    assert effective_state(h, now, 25.0) == ("online", None)
    state, reason = effective_state(h, now + timedelta(seconds=30), 25.0)
    assert state == "offline" and "no heartbeat for 33 s" in (reason or "")
    stalled = h.model_copy(update={"state": CameraState.STALLED, "error": "read timeout"})
    assert effective_state(stalled, now, 25.0) == ("stalled", "read timeout")
    assert effective_state(None, now, 25.0)[0] == "unknown"


def test_roles_nest() -> None:
    assert allows(Role.ADMIN, Role.RESPONDER) and allows(Role.RESPONDER, Role.VIEWER)
    assert not allows(Role.VIEWER, Role.RESPONDER) and not allows(Role.RESPONDER, Role.ADMIN)


def test_user_names_and_passwords_are_checked() -> None:
    assert check_name("rita.k-2") == "rita.k-2"
    for bad in ("", "Rita", "a b", "../x", "x" * 65, "-rita"):
        with pytest.raises(AuthError):
            check_name(bad)
    with pytest.raises(AuthError):
        check_password("short")
    assert check_password("x" * 10)


def test_status_filter() -> None:
    assert matches("acknowledged", "open") and matches("open", "open")
    assert matches("open", "unacknowledged") and not matches("acknowledged", "unacknowledged")
    assert not matches("cleared", "open") and matches("cleared", None)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"host": "127.0.0.1:8088", "origin": "http://127.0.0.1:8088"}, False),
        ({"host": "127.0.0.1:8088"}, False),  # no Origin (a script with a token): the CSRF token decides
        ({"host": "127.0.0.1:8088", "origin": "https://evil.example"}, True),
        ({"host": "127.0.0.1:8088", "origin": "null"}, True),
        ({"host": "127.0.0.1:8088", "referer": "https://evil.example/x"}, True),
        ({"host": "127.0.0.1:8088", "sec-fetch-site": "cross-site"}, True),
        ({"host": "console.internal:8088", "origin": "https://spill.example"}, False),  # via the public URL
    ],
)
def test_unsafe_requests_from_other_sites_are_refused(headers: dict[str, str], refused: bool) -> None:
    assert (cross_site_reason("POST", headers, "https://spill.example") is not None) is refused
    assert cross_site_reason("GET", headers, None) is None


def test_same_site_compares_host_and_port() -> None:
    assert same_site("http://127.0.0.1:8088/x", "127.0.0.1:8088", None)
    assert not same_site("http://127.0.0.1:9999/x", "127.0.0.1:8088", None)
    assert not same_site("not a url", "127.0.0.1:8088", None)


def test_redirect_after_sign_in_stays_on_this_site() -> None:
    assert safe_next("/incidents/x?y=1") == "/incidents/x?y=1"
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil.example", "", None, "javascript:alert(1)"):
        assert safe_next(bad) == "/cameras"


def _detail(**kw: object) -> IncidentDetail:
    base = {
        "incident_id": "i", "camera_id": "c", "state": "confirmed", "status": "open",
        "first_seen": T0, "confirmed_at": T0 + timedelta(seconds=2),
    }
    return IncidentDetail(**(base | kw))


def test_score_chart_from_the_timeline_or_the_confirming_window() -> None:
    pts = [TimelinePoint(seq=i, t=T0 + timedelta(seconds=i - 2), p=p) for i, p in enumerate([0.1, 0.2, 0.9, 0.95, 0.97, 0.5])]
    chart = score_chart(_detail(timeline=pts))
    assert chart is not None and chart.source == "timeline" and len(chart.dots) == 6
    assert [label for _, label in chart.markers] == ["first seen", "confirmed"]
    xs = [x for x, _, _ in chart.dots]
    assert xs == sorted(xs) and xs[0] == 24.0 and xs[-1] == 616.0
    high = next(y for _, y, p in chart.dots if p == 0.97)
    low = next(y for _, y, p in chart.dots if p == 0.1)
    assert high < chart.y_half < low  # SVG y grows downwards
    window = score_chart(_detail(scores=[0.7, 0.9, 0.95]))
    assert window is not None and window.source == "window" and len(window.dots) == 3
    assert score_chart(_detail()) is None


def test_overlay_cells_and_region() -> None:
    from spillwatch.events import Region

    ov = overlay(_detail(spill_map=[[0, 255], [128, 10]], region=Region(x0=0.5, y0=0.0, x1=1.0, y1=0.5)))
    assert [(x, y) for x, y, *_ in ov.cells] == [(500.0, 0.0), (0.0, 500.0)]
    assert ov.region == (500.0, 0.0, 500.0, 500.0)


def test_camera_outages_open_once_close_once_and_the_board_is_bounded() -> None:
    from console.outages import OutageBoard, merge_outage
    from spillwatch.events import CameraAlertState
    from tests.helpers.alerts import make_camera_alert

    off, stalled, rec = (make_camera_alert(s, "o-1") for s in (CameraAlertState.OFFLINE, CameraAlertState.STALLED,
                                                                 CameraAlertState.RECOVERED))
    r1, ch = merge_outage(None, off)
    assert ch == "opened" and r1 is not None and r1.open and r1.state == "offline"
    assert merge_outage(r1, stalled) == (r1, None)  # one outage, one opening
    r2, ch = merge_outage(r1, rec)
    assert ch == "recovered" and r2 is not None and not r2.open and r2.reason == "offline: rtsp timeout"
    assert merge_outage(r2, rec) == (r2, None) and merge_outage(r2, off) == (r2, None)  # nothing reopens it
    late, ch = merge_outage(None, rec)  # its opening fell out of retention
    assert ch == "recovered" and late is not None and late.since == off.since
    board = OutageBoard(max_records=3)
    for i in range(5):
        board.ingest(make_camera_alert(incident=f"o-{i}", camera=f"cam-{i}"))
        if i < 3:
            board.ingest(make_camera_alert(CameraAlertState.RECOVERED, incident=f"o-{i}", camera=f"cam-{i}"))
    assert len(board.recent()) == 3 and board.recent()[0].open
    assert {r.incident_id for r in board.recent() if r.open} == {"o-3", "o-4"}  # closed ones go first
    assert board.open_for("cam-4") is not None and board.open_for("cam-0") is None
    assert board.ingest(make_camera_alert(incident="o-4", camera="cam-9")) is None  # another camera's id
