"""The console and learned suppression, over HTTP against the real broker and Redis: the False alarm
button (API and page) creates the camera's suppression at once and says so; Spill confirmed never
does; the list and the Remove button (responders); forcing above the area cap (admins only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from console.auth import Role
from console.service import ConsoleService, stores
from spillwatch.events import utcnow
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings
from spillwatch.suppression import Observation
from tests.helpers import wait_until
from tests.helpers.alerts import make_alert
from tests.helpers.console import PASSWORD, console_settings, csrf_of, publish_alerts, sign_in

pytestmark = pytest.mark.integration

STAIN = [120, 128, 130, 60, 20, 40]


class Env:
    def __init__(self, settings: Settings, svc: ConsoleService, tokens: dict[str, str]) -> None:
        self.settings, self.svc, self.tokens, self.url = settings, svc, tokens, svc.url

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[token]}"}, timeout=10)

    def kept_frames(self, incident: str, cells: list[int], camera: str = "dock-1") -> None:
        """What the aggregator keeps of an incident's frames (processors/suppression.py)."""
        keys = RedisKeys(self.settings.redis.key_prefix)
        for seq in range(4):
            o = Observation(camera_id=camera, seq=seq, capture_time=utcnow(), grid=(10, 10), model_version="m1",
                            looks=[[c, *STAIN] for c in cells])
            self.svc.redis.rpush(keys.supp_learn(incident), o.model_dump_json())


@pytest.fixture(scope="module")
def env(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("console-supp")
    s = console_settings(local_stack, tmp, cameras=("dock-1",))
    svc = ConsoleService(s)
    users, tokens = stores(s, svc.redis)
    users.add("rita", PASSWORD, Role.RESPONDER)
    users.add("ada", PASSWORD, Role.ADMIN)
    toks = {"bot": tokens.create("ops-bot", Role.RESPONDER), "dash": tokens.create("dashboard", Role.VIEWER),
            "root": tokens.create("root-bot", Role.ADMIN)}
    svc.start()
    try:
        yield Env(s, svc, toks)
    finally:
        svc.stop()


def _known(env: Env, incident: str) -> None:
    with env.api("dash") as c:
        wait_until(lambda: c.get(f"/api/incidents/{incident}").status_code == 200, 20)


@pytest.mark.timeout(60)
def test_false_alarm_button_creates_a_suppression_listed_and_removable(env: Env) -> None:
    publish_alerts(env.settings, make_alert(incident="sup-fa"), make_alert(incident="sup-real"))
    _known(env, "sup-real")
    env.kept_frames("sup-fa", [62, 63])
    env.kept_frames("sup-real", [20])
    with env.api("bot") as bot, env.api("dash") as viewer:
        r = bot.post("/api/incidents/sup-real/label", json={"label": "spill"})
        assert r.status_code == 200 and r.json()["suppression"]["status"] == "not_suppressed"
        r = bot.post("/api/incidents/sup-fa/label", json={"label": "clean"})
        assert r.status_code == 200, r.text
        made = r.json()["suppression"]
        assert made["status"] == "created" and made["cells"] == 2 and made["by"] == "token:ops-bot"
        listed = viewer.get("/api/suppressions", params={"camera": "dock-1"}).json()
        assert [(x["id"], x["incident_id"], x["by"], x["source"], x["cells"], x["fired"], x["expired"]) for x in listed] == [
            (made["entry_id"], "sup-fa", "token:ops-bot", "console", [62, 63], 0, False)]
        assert viewer.get("/api/suppressions", params={"camera": "dock-9"}).json() == []
        detail = viewer.get("/api/incidents/sup-fa").json()
        assert detail["suppression"]["entry_id"] == made["entry_id"]
        assert viewer.get("/api/incidents/sup-real").json()["suppression"]["status"] == "not_suppressed"
        assert bot.post("/api/incidents/sup-real/suppress", json={}).json()["status"] == "not_suppressed"  # a real spill: never

        assert viewer.post(f"/api/suppressions/{made['entry_id']}/remove").status_code == 403  # viewers read only
        assert bot.post("/api/suppressions/sup-000000000000/remove").status_code == 404
        r = bot.post(f"/api/suppressions/{made['entry_id']}/remove")
        assert r.status_code == 200 and r.json()["incident_id"] == "sup-fa"
        assert viewer.get("/api/suppressions").json() == []
        spec = viewer.get("/api/openapi.json").json()
        assert {"/api/suppressions", "/api/suppressions/{entry_id}/remove", "/api/incidents/{incident_id}/suppress"} <= set(spec["paths"])


@pytest.mark.timeout(60)
def test_area_cap_only_an_admin_forces_it(env: Env) -> None:
    publish_alerts(env.settings, make_alert(incident="sup-wide"))
    _known(env, "sup-wide")
    env.kept_frames("sup-wide", list(range(30)))
    with env.api("bot") as bot, env.api("root") as admin:
        r = bot.post("/api/incidents/sup-wide/label", json={"label": "clean"})
        assert r.status_code == 200 and r.json()["suppression"]["status"] == "refused"
        assert "30% of camera dock-1" in r.json()["suppression"]["message"]
        assert bot.post("/api/incidents/sup-wide/suppress", json={"force": True}).status_code == 403
        r = admin.post("/api/incidents/sup-wide/suppress", json={"force": True})
        assert r.status_code == 200 and r.json()["status"] == "created"
        listed = admin.get("/api/suppressions").json()
        assert [(x["incident_id"], x["forced"], x["area"]) for x in listed] == [("sup-wide", True, 0.3)]
        assert admin.post(f"/api/suppressions/{listed[0]['id']}/remove").status_code == 200


@pytest.mark.timeout(60)
def test_pages_the_false_alarm_button_and_the_suppressions_page(env: Env) -> None:
    publish_alerts(env.settings, make_alert(incident="sup-page"))
    _known(env, "sup-page")
    env.kept_frames("sup-page", [44])
    rita = sign_in(env.url, "rita")
    csrf = csrf_of(rita)
    r = rita.post("/incidents/sup-page/label", data={"label": "clean", "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    r = rita.post("/incidents/sup-page/suppress", data={"force": "1", "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 403  # forcing above the area cap is an admin's
    page = rita.get("/incidents/sup-page").text
    assert 'id="suppression"' in page and "created" in page and "suppressed 1 map cell(s) of dock-1" in page
    listing = rita.get("/suppressions").text
    entry = RedisKeys(env.settings.redis.key_prefix)
    ids = [i if isinstance(i, str) else i.decode() for i in env.svc.redis.hkeys(entry.supp_entries)]
    assert len(ids) == 1 and ids[0] in listing and "sup-page" in listing and "rita" in listing
    r = rita.post(f"/suppressions/{ids[0]}/remove", data={"csrf_token": "wrong"}, follow_redirects=False)
    assert r.status_code == 403 and env.svc.redis.hlen(entry.supp_entries) == 1  # CSRF
    r = rita.post(f"/suppressions/{ids[0]}/remove", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "removed" in r.headers["location"]
    assert env.svc.redis.hlen(entry.supp_entries) == 0
    assert "No suppression" in rita.get("/suppressions").text
    rita.close()
