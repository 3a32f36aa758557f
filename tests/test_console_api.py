"""The console over HTTP against the real broker and Redis: authentication and roles, the JSON API,
live events, the incident index built from ``spill-alerts``, camera state from ``camera-health``,
labels into the archive, and the answers to hostile or broken requests (raw sockets)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.auth import Role
from console.service import ConsoleService, make_redis, stores
from spillwatch.acks import AckStore
from spillwatch.archive import LabelRecord, load_archive, read_labels
from spillwatch.events import AlertState, CameraState, utcnow
from spillwatch.settings import REPO_ROOT, Settings, write_settings_file
from spillwatch.supervisor import child_env
from tests.helpers import wait_until
from tests.helpers.alerts import make_alert
from tests.helpers.console import (
    PASSWORD,
    classification,
    console_settings,
    csrf_of,
    health,
    publish,
    publish_alerts,
    raw_http,
    sign_in,
    status_of,
)

pytestmark = pytest.mark.integration


class Env:
    def __init__(self, settings: Settings, svc: ConsoleService, tokens: dict[str, str]) -> None:
        self.settings = settings
        self.svc = svc
        self.tokens = tokens
        self.url = svc.url
        self.port = settings.console.port

    def api(self, token: str = "bot") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[token]}"}, timeout=10)


@pytest.fixture(scope="module")
def env(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("console-api")
    s = console_settings(local_stack, tmp, cameras=("dock-1", "dock-2"), request_timeout_s=2.0, keep_alive_s=2,
                         max_body_bytes=4096)
    svc = ConsoleService(s)
    users, tokens = stores(s, svc.redis)
    users.add("rita", PASSWORD, Role.RESPONDER)
    users.add("victor", PASSWORD, Role.VIEWER)
    toks = {"bot": tokens.create("ops-bot", Role.RESPONDER), "dash": tokens.create("dashboard", Role.VIEWER)}
    svc.start()
    try:
        yield Env(s, svc, toks)
    finally:
        svc.stop()


def _incident(env: Env, incident_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
    with env.api() as c:
        return wait_until(lambda: (r := c.get(f"/api/incidents/{incident_id}")).status_code == 200 and r.json(), timeout_s)  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
def test_incidents_from_the_topic_open_first_filtered_and_paged(env: Env) -> None:
    now = utcnow().replace(microsecond=0)

    def alert(inc: str, cam: str, minutes_ago: int, state: AlertState = AlertState.CONFIRMED) -> Any:
        a = make_alert(state, incident=inc)
        t = now - timedelta(minutes=minutes_ago)
        return a.model_copy(update={"camera_id": cam, "first_seen": t - timedelta(seconds=2), "confirmed_at": t,
                                    "cleared_at": t + timedelta(minutes=1) if state == AlertState.CLEARED else None})

    publish_alerts(env.settings, alert("lst-a", "dock-1", 30), alert("lst-a", "dock-1", 30, AlertState.CLEARED),
                   alert("lst-b", "dock-1", 10), alert("lst-c", "dock-2", 20), alert("lst-c", "dock-2", 20, AlertState.ESCALATED),
                   alert("lst-c", "dock-2", 20))  # a redelivered confirmed changes nothing
    _incident(env, "lst-c")
    with env.api("dash") as c:
        def ids(**q: Any) -> list[str]:
            r = c.get("/api/incidents", params=q)
            assert r.status_code == 200, r.text
            return [i["incident_id"] for i in r.json()["items"] if i["incident_id"].startswith("lst-")]

        wait_until(lambda: ids() == ["lst-b", "lst-c", "lst-a"], 20)  # open first (newest first), then history
        assert ids(camera="dock-1") == ["lst-b", "lst-a"]
        assert ids(status="cleared") == ["lst-a"]
        assert ids(status="open", camera="dock-2") == ["lst-c"]
        assert ids(since=(now - timedelta(minutes=15)).isoformat()) == ["lst-b"]
        page2 = c.get("/api/incidents", params={"per_page": 1, "page": 2, "camera": "dock-1"}).json()
        assert [i["incident_id"] for i in page2["items"]] == ["lst-a"] and page2["has_more"] is False
        detail = c.get("/api/incidents/lst-c").json()
        assert detail["escalated"] is True and detail["state"] == "escalated" and detail["status"] == "open"
        assert detail["alert_states"] == ["confirmed", "escalated"] and detail["model_version"] == "effl0-v3"
        assert c.get("/api/incidents/lst-a").json()["cleared_at"] is not None
        assert c.get("/api/incidents/nope").status_code == 404
        assert c.get("/api/incidents", params={"status": "bogus"}).status_code == 400
        assert c.get("/api/incidents", params={"since": "yesterday"}).status_code == 400
        spec = c.get("/api/openapi.json").json()
        assert {"/api/cameras", "/api/incidents", "/api/incidents/{incident_id}", "/api/incidents/{incident_id}/ack",
                "/api/incidents/{incident_id}/label"} <= set(spec["paths"])


@pytest.mark.timeout(60)
def test_api_auth_roles_ack_label_and_live_events(env: Env) -> None:
    publish_alerts(env.settings, make_alert(incident="auth-1"), make_alert(incident="auth-2"))
    _incident(env, "auth-2")
    anon = httpx.Client(base_url=env.url, timeout=10)
    assert anon.get("/api/incidents").status_code == 401
    assert anon.get("/api/incidents", headers={"Authorization": "Bearer swc_not-a-token"}).status_code == 401
    assert anon.post("/api/incidents/auth-1/ack", json={}).status_code == 401
    assert anon.get("/incidents", follow_redirects=False).headers["location"].startswith("/login?next=")
    with env.api("dash") as viewer:
        r = viewer.post("/api/incidents/auth-1/ack", json={"note": "x"})
        assert r.status_code == 403 and "responder" in r.json()["detail"]
    redis = make_redis(env.settings.redis.url)
    acks = AckStore(redis, env.settings.redis.key_prefix, 60)
    assert acks.get("auth-1") is None

    with env.api() as bot, bot.stream("GET", "/api/events") as events:
        lines = events.iter_lines()
        assert next(lines).startswith("retry:")
        r = bot.post("/api/incidents/auth-1/ack", json={"note": "on my way"})
        assert r.status_code == 200, r.text
        assert r.json()["by"] == "token:ops-bot"
        seen = []
        for line in lines:
            if line.startswith("data:") and "auth-1" in line:
                seen.append(json.loads(line[5:]))
                break
        assert seen[0]["change"] == "acknowledged"
        assert bot.post("/api/incidents/nope/ack", json={}).status_code == 404
        assert bot.post("/api/incidents/auth-1/ack", json={"by": "mallory"}).status_code == 422  # identity is the caller
        assert bot.post("/api/incidents/auth-2/label", json={"label": "maybe"}).status_code == 422
        assert bot.post("/api/incidents/auth-2/label", content=b"label=clean",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
        r = bot.post("/api/incidents/auth-2/label", json={"label": "clean"})
        assert r.status_code == 200 and r.json()["label"] == "clean"
    ack = acks.get("auth-1")
    assert ack is not None and ack.by == "token:ops-bot" and ack.note == "on my way"
    labelled = acks.get("auth-2")  # a verdict acknowledges an unacknowledged incident
    assert labelled is not None and labelled.label is None and labelled.note == "false alarm"
    labels = [lr for lr in read_labels(env.settings.archive.root) if lr.incident_id == "auth-2"]
    assert [(lr.label, lr.source, lr.by) for lr in labels] == [("clean", "console", "token:ops-bot")]
    assert _incident(env, "auth-2")["verdict"]["label"] == "clean"
    redis.close()


@pytest.mark.timeout(60)
def test_label_reaches_the_archive_like_spillwatch_label(env: Env, tmp_path: Path) -> None:
    """The console's verdict is the archive's ``LabelRecord``: the incident's frames inherit it."""
    from tests.helpers.archive_builder import Incident, build_camera, t_of

    root = Path(env.settings.archive.root)
    build_camera(root, "dock-1", 20, set(range(5, 15)), [Incident("arch-1", 5, 7, 14)])
    alert = make_alert(incident="arch-1").model_copy(update={"first_seen": t_of(5), "confirmed_at": t_of(7)})
    publish_alerts(env.settings, alert)
    _incident(env, "arch-1")
    with env.api() as bot:
        assert bot.post("/api/incidents/arch-1/label", json={"label": "spill"}).status_code == 200
    frames = [f for f in load_archive(root) if f.incident_id == "arch-1"]
    assert frames and {f.label for f in frames if f.capture_time >= t_of(5) and f.capture_time <= t_of(14)} == {"spill"}
    last = read_labels(root)[-1]
    assert isinstance(last, LabelRecord) and last.incident_id == "arch-1" and last.source == "console"


@pytest.mark.timeout(60)
def test_sign_in_csrf_origin_and_sign_out(env: Env) -> None:
    publish_alerts(env.settings, make_alert(incident="csrf-1"))
    _incident(env, "csrf-1")
    anon = httpx.Client(base_url=env.url, timeout=10)
    r = anon.get("/login")
    bad = anon.post("/login", data={"username": "rita", "password": "wrong-password!", "csrf_token": anon.cookies["spillwatch_login"]})
    assert bad.status_code == 401 and "spillwatch_session" not in anon.cookies
    assert anon.post("/login", data={"username": "rita", "password": PASSWORD, "csrf_token": "forged"}).status_code == 403

    rita = sign_in(env.url, "rita")
    csrf = csrf_of(rita)
    # a form post without the session's CSRF token, or with someone else's: refused
    assert rita.post("/incidents/csrf-1/ack", data={}).status_code == 403
    assert rita.post("/incidents/csrf-1/ack", data={"csrf_token": "x" * 43}).status_code == 403
    # a cross-site text/plain "simple request" (what a hostile page can send with the cookie): refused
    r = rita.post("/api/incidents/csrf-1/label", content=b'{"label": "clean"}',
                  headers={"Content-Type": "text/plain", "Origin": "https://evil.example"})
    assert r.status_code == 403
    r = rita.post("/incidents/csrf-1/label", data={"csrf_token": csrf, "label": "clean"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = rita.post("/incidents/csrf-1/label", data={"csrf_token": csrf, "label": "clean"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # the JSON API with a session needs the CSRF header
    assert rita.post("/api/incidents/csrf-1/ack", json={}).status_code == 403
    assert not [lr for lr in read_labels(env.settings.archive.root) if lr.incident_id == "csrf-1"]
    # the same-site form with the token works
    r = rita.post("/incidents/csrf-1/ack", data={"csrf_token": csrf}, headers={"Origin": env.url})
    assert r.status_code == 303
    assert _incident(env, "csrf-1")["ack"]["by"] == "rita"
    # a viewer's session cannot acknowledge, even with a valid token
    victor = sign_in(env.url, "victor")
    r = victor.post("/incidents/csrf-1/label", data={"csrf_token": csrf_of(victor), "label": "spill"})
    assert r.status_code == 403
    assert victor.get("/users").status_code == 403
    # sign-out ends the session on the server (the old cookie is worthless)
    assert rita.get("/api/me").json()["name"] == "rita"
    r = rita.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303 and 'spillwatch_session=""' in r.headers["set-cookie"]
    assert rita.get("/api/me").status_code == 401  # the same cookie, replayed


@pytest.mark.timeout(60)
def test_session_cookie_attributes_and_login_lockout(local_stack: Any, tmp_path: Path) -> None:
    s = console_settings(local_stack, tmp_path, cookie_secure=True, login_max_failures=3, admin_password=PASSWORD)
    with ConsoleService(s) as svc:
        c = httpx.Client(base_url=svc.url, timeout=10)  # Secure cookies are not sent back over http: by hand

        def login(password: str) -> httpx.Response:
            token = c.get("/login").cookies["spillwatch_login"]
            return c.post("/login", data={"username": "admin", "password": password, "csrf_token": token},
                          headers={"Cookie": f"spillwatch_login={token}"})

        r = login(PASSWORD)
        assert r.status_code == 303
        cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("spillwatch_session="))
        attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=lax", "path=/"} <= attrs
        for _ in range(3):
            assert login("nope-nope-nope").status_code == 401
        assert login(PASSWORD).status_code == 429  # locked, even with the right password


@pytest.mark.timeout(60)
def test_hostile_and_broken_requests_get_clean_4xx(env: Env) -> None:
    """Issue 9's list for the ack API, asked of its replacement over raw sockets."""
    port, tok = env.port, env.tokens["bot"]
    head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {tok}\r\n"
    cases = {
        "content-length abc": f"POST /api/incidents/x/ack HTTP/1.1\r\n{head}Content-Length: abc\r\n\r\n".encode(),
        "content-length -1": f"POST /api/incidents/x/ack HTTP/1.1\r\n{head}Content-Length: -1\r\n\r\n".encode(),
        "two lengths": f"POST /api/incidents/x/ack HTTP/1.1\r\n{head}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}".encode(),
    }
    for what, data in cases.items():
        resp, took = raw_http(port, data, wait_s=5)
        assert status_of(resp) == 400, (what, resp[:200])
        assert b"Traceback" not in resp and took < 4, what
    body = b'{"note": "\xff\xfe not utf-8"}'
    resp, _ = raw_http(port, f"POST /api/incidents/auth-1/ack HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    assert status_of(resp) == 400 and b"Traceback" not in resp, resp[:300]
    big = b"{" + b" " * 5000 + b"}"
    resp, _ = raw_http(port, f"POST /api/incidents/auth-1/ack HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                             f"Content-Length: {len(big)}\r\nConnection: close\r\n\r\n".encode() + big)
    assert status_of(resp) == 413
    chunked = b"".join(b"400\r\n" + b" " * 1024 + b"\r\n" for _ in range(6)) + b"0\r\n\r\n"
    resp, _ = raw_http(port, f"POST /api/incidents/auth-1/ack HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                             "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode() + chunked)
    assert status_of(resp) == 413
    resp, _ = raw_http(port, b"GET /api/incidents HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 400  # DNS rebinding: a foreign Host is not answered
    # a body that never arrives: 408 within the request deadline (2 s here), not a held connection
    resp, took = raw_http(port, f"POST /api/incidents/auth-1/ack HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                                f"Content-Length: 100\r\n\r\n{{\"note\":".encode(), wait_s=10)
    assert status_of(resp) == 408 and took < 6, (resp[:200], took)
    # idle and half-sent connections are closed by the server (no thread or slot held forever)
    for data in (b"", b"GET /api/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
        resp, took = raw_http(port, data, wait_s=10)
        assert resp in (b"",) or status_of(resp) in (400, 408), resp[:200]
        assert took < 6, f"connection held {took:.1f} s"
    # keep-alive connections idle after a response are closed too
    resp, took = raw_http(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(), wait_s=10)
    assert status_of(resp) == 200 and took < 6


@pytest.mark.timeout(60)
def test_snapshot_only_for_signed_in_users_and_only_from_the_evidence_dir(env: Env) -> None:
    evidence = Path(env.settings.alerting.evidence_dir)
    evidence.mkdir(parents=True, exist_ok=True)
    jpeg = b"\xff\xd8\xff\xe0" + b"snapshot" + b"\xff\xd9"
    (evidence / "snap-1.jpg").write_bytes(jpeg)
    outside = evidence.parent / "secret.jpg"
    outside.write_bytes(b"\xff\xd8secret\xff\xd9")
    publish_alerts(env.settings, make_alert(incident="snap-1", snapshot="snap-1.jpg"),
                   make_alert(incident="snap-2", snapshot="../secret.jpg"))
    _incident(env, "snap-2")
    anon = httpx.Client(base_url=env.url, timeout=10)
    assert anon.get("/api/incidents/snap-1/snapshot").status_code == 401
    assert anon.get("/incidents/snap-1/snapshot", follow_redirects=False).status_code == 303
    with env.api("dash") as c:
        r = c.get("/api/incidents/snap-1/snapshot")
        assert r.status_code == 200 and r.content == jpeg and r.headers["content-type"] == "image/jpeg"
        assert "no-store" in r.headers["cache-control"]
        assert c.get("/api/incidents/snap-2/snapshot").status_code == 404
        assert c.get("/api/incidents/snap-1").json()["has_snapshot"] is True


@pytest.mark.timeout(60)
def test_camera_state_from_camera_health_and_prometheus_gauges(env: Env) -> None:
    from tests.helpers.deploy import metric, metric_samples

    now = utcnow()
    publish(env.settings, env.settings.topics.camera_health, [
        ("dock-1", health("dock-1", CameraState.ONLINE, now, fps=1.9, last_frame=now - timedelta(seconds=1)).to_bytes()),
        ("dock-2", health("dock-2", CameraState.OFFLINE, now, fps=0.0, error="source ended").to_bytes()),
    ])
    publish(env.settings, env.settings.topics.classifications, [("dock-1", classification("dock-1", 7, now, 0.42).to_bytes())])
    with env.api("dash") as c:
        def cams() -> dict[str, Any]:
            return {x["camera_id"]: x for x in c.get("/api/cameras").json()}

        wait_until(lambda: cams()["dock-1"]["state"] == "online" and cams()["dock-1"]["spill_prob"] == 0.42, 20)
        got = cams()
        assert got["dock-1"]["fps"] == 1.9 and got["dock-1"]["configured_fps"] == 2.0
        assert got["dock-2"]["state"] == "offline" and got["dock-2"]["reason"] == "source ended"
        samples = metric_samples(env.settings.console.metrics_port)
        assert metric(samples, "spillwatch_last_frame_timestamp_seconds", camera="dock-1") == pytest.approx(
            (now - timedelta(seconds=1)).timestamp(), abs=0.01)
        assert metric(samples, "spillwatch_camera_fps", camera="dock-1") == 1.9
        # heartbeats stop: offline once the last one is older than offline_after_s + 2 x heartbeat_s (5 s here)
        wait_until(lambda: cams()["dock-1"]["state"] == "offline", 15)
        assert "no heartbeat" in cams()["dock-1"]["reason"]


@pytest.mark.timeout(60)
def test_camera_outages_from_camera_alerts_live_with_their_pages_and_a_gauge(env: Env) -> None:
    from spillwatch.events import CameraAlertState
    from spillwatch.redis_keys import RedisKeys
    from tests.helpers.alerts import make_camera_alert
    from tests.helpers.deploy import metric, metric_samples

    topic, inc = env.settings.topics.camera_alerts, "outage-dock-2-api"
    with env.api("dash") as c, c.stream("GET", "/api/events") as events:
        lines = events.iter_lines()
        assert next(lines).startswith("retry:")

        def next_event(change: str) -> dict[str, Any]:
            for line in lines:
                if line.startswith("data:") and inc in line and (ev := json.loads(line[5:]))["change"] == change:
                    return ev  # type: ignore[no-any-return]
            raise AssertionError("stream ended")

        publish(env.settings, topic, [
            ("ghost", make_camera_alert(incident="outage-ghost", camera="ghost").to_bytes()),  # not configured: not shown
            ("dock-2", make_camera_alert(incident=inc, camera="dock-2").to_bytes()),
        ])
        assert next_event("outage-opened") == {"type": "camera", "camera_id": "dock-2", "outage_id": inc, "change": "outage-opened"}
        cam = {x["camera_id"]: x for x in c.get("/api/cameras").json()}["dock-2"]
        assert cam["outage"]["incident_id"] == inc and cam["outage"]["paged_at"] is None
        # alerting records the page it sent: the console announces it and shows when
        page = {"kind": "camera", "incident_id": inc, "camera_id": "dock-2", "state": "offline", "channel": "webhook",
                "status": "sent", "at": "2026-11-29T01:01:01+00:00", "tries": 1, "reason": "HTTP 200"}
        r = make_redis(env.settings.redis.url)
        r.hset(RedisKeys(env.settings.redis.key_prefix).alerting_incident_pages(inc), "offline:webhook", json.dumps(page))
        next_event("paged")
        outages = {o["incident_id"]: o for o in c.get("/api/outages").json()}
        assert "outage-ghost" not in outages
        o = outages[inc]
        assert o["status"] == "open" and o["state"] == "offline" and o["reason"] == "offline: rtsp timeout"
        assert o["paged_at"] == "2026-11-29T01:01:01Z" and [p["channel"] for p in o["pages"]] == ["webhook"]
        assert metric(metric_samples(env.settings.console.metrics_port), "spillwatch_camera_outage", camera="dock-2") == 1
        html = sign_in(env.url, "victor").get("/cameras/_grid").text
        assert f'data-outage="{inc}"' in html and "paged 01:01:01" in html
        publish(env.settings, topic, [("dock-2", make_camera_alert(CameraAlertState.RECOVERED, incident=inc, camera="dock-2").to_bytes())])
        next_event("outage-recovered")
        assert {x["camera_id"]: x for x in c.get("/api/cameras").json()}["dock-2"]["outage"] is None
        assert {o["incident_id"]: o for o in c.get("/api/outages").json()}[inc]["status"] == "recovered"
        assert metric(metric_samples(env.settings.console.metrics_port), "spillwatch_camera_outage", camera="dock-2") == 0
        r.close()


@pytest.mark.timeout(90)
def test_cli_creates_users_and_tokens_without_secrets_in_argv(env: Env, tmp_path: Path) -> None:
    cfg = write_settings_file(env.settings, tmp_path / "cli.yaml")

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "spillwatch.cli", "console", *args], env=child_env(cfg), cwd=REPO_ROOT,
                              input=stdin, capture_output=True, text=True, timeout=60)

    r = cli("user", "add", "carla", "--role", "responder", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert cli("user", "add", "carla", "--password-stdin", stdin=PASSWORD + "\n").returncode == 2  # exists
    short = cli("user", "add", "dan", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least" in short.stderr
    assert "carla" in cli("user", "list").stdout
    token = cli("token", "add", "pager", "--role", "viewer").stdout.strip()
    assert token.startswith("swc_")
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/me").json() == {"name": "pager", "role": "viewer", "kind": "token"}
    assert cli("token", "revoke", "pager").returncode == 0
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/me").status_code == 401
    rc = sign_in(env.url, "carla")
    assert rc.get("/api/me").json()["role"] == "responder"
