"""The console in a real browser (headless Chromium from the system, driven by Playwright) against the
demo's composition: the embedded broker and Redis, the classifier worker with the shipped model, the
aggregator, alerting, the console, and a producer playing the bundled (synthetic) clips plus a short
synthetic clip that ends early (a camera that stops: it shows offline, the camera monitor in the
aggregator pages its outage after its 5 s grace period, and the console shows the page).

One stack and one console for the module; the tests run in order (the producer starts in the live
test, after the pages are open). Screenshots of the three pages are written to
``$SPILLWATCH_SCREENSHOTS`` (``docs/console`` to refresh the documentation's), else to a temp folder.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.auth import Role, UserStore
from devstack.demo import (
    Clip,
    bundled_clips,
    console_url,
    demo_settings,
    start_services,
)
from devstack.stack import free_port
from spillwatch.archive import read_labels
from spillwatch.settings import Settings
from spillwatch.supervisor import ChildProcess, ServiceGroup
from tests.helpers import make_video, wait_until
from tests.helpers.console import PASSWORD

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium; .ci/run does)"),
]
ADMIN_PASSWORD = "demo-admin-password"
# a loaded CI machine (2 cores running the broker, Redis, every service and the browser) is slow:
# generous waits guard against hangs, they do not measure speed
BROWSER_TIMEOUT_MS = 60_000
SHORT = "dock-short"


@dataclass
class Demo:
    settings: Settings
    group: ServiceGroup
    url: str
    run_dir: Path
    shots: Path
    browser: Any
    producer: ChildProcess | None = None
    incident: str | None = None
    contexts: dict[str, Any] = field(default_factory=dict)

    def start_producer(self) -> None:
        if self.producer is None:
            self.producer = self.group.start(["produce", "--speed", "1", "--out", str(self.run_dir / "producer-stats.json")])

    def signed_in(self, user: str, password: str = PASSWORD) -> Any:
        """A browser context signed in as ``user`` through the login form (kept for the module)."""
        if user not in self.contexts:
            ctx = self.browser.new_context(viewport={"width": 1280, "height": 800})
            ctx.set_default_timeout(BROWSER_TIMEOUT_MS)
            page = ctx.new_page()
            page.goto(self.url + "/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url("**/cameras")
            page.close()
            self.contexts[user] = ctx
        return self.contexts[user]

    def api(self, path: str) -> Any:
        """The console's JSON API as the admin user (a fresh session per call is fine here)."""
        from tests.helpers.console import sign_in

        with sign_in(self.url, "admin", ADMIN_PASSWORD) as c:
            return c.get(path).json()


@pytest.fixture(scope="module")
def demo(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from playwright.sync_api import sync_playwright

    from spillwatch.kafka import create_topics

    run_dir = tmp_path_factory.mktemp("console-browser")
    short = make_video(run_dir / "short.mp4", n_frames=30, fps=10.0, size=(640, 480))
    clips = [*bundled_clips(), Clip(SHORT, short, {"n_frames": 30, "fps": 10.0, "onset_s": None})]
    ns = uuid.uuid4().hex[:8]
    base = Settings(kafka={"topic_prefix": f"br.{ns}."}, redis={"key_prefix": f"br:{ns}"})
    hook_port = free_port()
    settings = demo_settings(base, clips, local_stack, run_dir, hook_port, free_port(), admin_password=ADMIN_PASSWORD)
    settings = settings.model_copy(update={
        "cameras": [c.model_copy(update={"outage_grace_s": 5.0}) if c.id == SHORT else c for c in settings.cameras],
        # the cameras are silent until the live test starts their producer: not an outage here
        "outages": settings.outages.model_copy(update={"silence_s": 300.0}),
    })
    create_topics(settings)
    shots = Path(os.environ.get("SPILLWATCH_SCREENSHOTS") or run_dir / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    import redis as redis_lib

    with ServiceGroup(settings, run_dir / "logs") as group, sync_playwright() as pw:
        start_services(group, settings, 1, hook_port, run_dir / "webhook-pages.jsonl")  # creates user admin
        r = redis_lib.Redis.from_url(settings.redis.url)
        UserStore(r, settings.redis.key_prefix).add("victor", PASSWORD, Role.VIEWER)
        r.close()
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-dev-shm-usage"],
        )
        d = Demo(settings, group, console_url(settings), run_dir, shots, browser)
        try:
            yield d
        finally:
            for ctx in d.contexts.values():
                ctx.close()
            browser.close()


@pytest.mark.timeout(120)
def test_sign_in_and_sign_out(demo: Demo) -> None:
    ctx = demo.browser.new_context()
    ctx.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = ctx.new_page()
    page.goto(demo.url + "/incidents")
    assert "/login" in page.url  # not signed in: the sign-in page, then back where we wanted to go
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.inner_text(".error")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/incidents")
    assert "admin" in page.inner_text(".me")
    cookie = next(c for c in ctx.cookies() if c["name"] == "spillwatch_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    page.click("#sign-out")
    page.wait_for_url("**/login")
    page.goto(demo.url + "/cameras")
    assert "/login" in page.url and not [c for c in ctx.cookies() if c["name"] == "spillwatch_session"]
    ctx.close()


@pytest.mark.timeout(120)
def test_admin_adds_a_responder_on_the_users_page(demo: Demo) -> None:
    page = demo.signed_in("admin", ADMIN_PASSWORD).new_page()
    page.goto(demo.url + "/users")
    page.fill("form.adduser input[name=name]", "rita")
    page.select_option("form.adduser select[name=role]", "responder")
    page.fill("form.adduser input[name=password]", PASSWORD)
    page.click("form.adduser button[type=submit]")
    assert "user rita added" in page.inner_text(".ok")
    assert "rita" in page.inner_text("table.users")
    page.close()
    viewer = demo.signed_in("victor").new_page()
    viewer.goto(demo.url + "/users")
    assert "403" in viewer.inner_text("h1")  # only admins manage users
    viewer.close()


@pytest.mark.timeout(240)
def test_spill_incident_appears_live_with_its_snapshot_and_a_stopped_camera_goes_offline_and_is_paged(demo: Demo) -> None:
    ctx = demo.signed_in("rita")
    incidents, cameras = ctx.new_page(), ctx.new_page()
    incidents.goto(demo.url + "/incidents")
    cameras.goto(demo.url + "/cameras")
    for p in (incidents, cameras):
        p.wait_for_selector("body[data-live-ready='1']")  # the event stream is connected
        p.evaluate("window.__notReloaded = true")
    t0 = time.monotonic()
    demo.start_producer()

    row = incidents.wait_for_selector("tr[data-incident^='demo-spill']", timeout=90_000)
    appeared_s = time.monotonic() - t0
    demo.incident = row.get_attribute("data-incident")
    assert incidents.evaluate("window.__notReloaded") is True, "the page was reloaded"
    assert row.get_attribute("data-status") == "open"
    cameras.wait_for_selector(f"article[data-camera='{SHORT}'][data-state='offline']", timeout=60_000)
    assert cameras.evaluate("window.__notReloaded") is True
    assert "source ended" in cameras.inner_text(f"article[data-camera='{SHORT}']")
    # ... and its outage is paged (camera_channels default: the demo's console + webhook) and shown, live
    cameras.wait_for_selector(f"article[data-camera='{SHORT}'][data-outage] .paged", timeout=60_000)
    outage = cameras.wait_for_selector(f"tr[data-camera='{SHORT}'][data-status='open']", timeout=10_000)
    cameras.wait_for_selector(f"tr[data-camera='{SHORT}'] .page[data-channel='webhook'][data-state='offline']",
                              timeout=10_000)
    assert "webhook: sent" in outage.inner_text() and "source ended" in outage.inner_text()
    assert cameras.evaluate("window.__notReloaded") is True
    outage_id = outage.get_attribute("data-outage")
    hooks = [json.loads(line)["payload"] for line in (demo.run_dir / "webhook-pages.jsonl").read_text().splitlines()]
    assert [(h["event"], h["camera_id"]) for h in hooks if h["incident_id"] == outage_id] == [("camera.offline", SHORT)]
    cameras.wait_for_selector("article[data-camera='demo-spill'] .badge.incident", timeout=30_000)
    cameras.wait_for_selector("article[data-camera='demo-clean'] img", timeout=60_000)  # a thumbnail from `frames`
    print(f"incident {demo.incident} on the page {appeared_s:.1f} s after the producer started")

    incidents.click(f"tr[data-incident='{demo.incident}'] a")
    incidents.wait_for_url(f"**/incidents/{demo.incident}")
    incidents.wait_for_function("document.getElementById('snapshot') && document.getElementById('snapshot').naturalWidth > 0")
    assert incidents.is_visible("#btn-ack") and incidents.is_visible("#btn-false")
    assert "console" in incidents.inner_text("table.pages")  # the pages alerting sent
    shoot(incidents, demo.shots / "incident.png", full_page=True)
    incidents.goto(demo.url + "/incidents")
    shoot(incidents, demo.shots / "incidents.png")
    shoot(cameras, demo.shots / "cameras.png")
    anon = httpx.get(f"{demo.url}/incidents/{demo.incident}/snapshot", follow_redirects=False)
    assert anon.status_code == 303  # evidence only for signed-in users
    incidents.close()
    cameras.close()


@pytest.mark.timeout(120)
def test_viewer_cannot_acknowledge(demo: Demo) -> None:
    assert demo.incident, "needs the live test's incident"
    page = demo.signed_in("victor").new_page()
    page.goto(f"{demo.url}/incidents/{demo.incident}")
    assert page.is_visible("#read-only") and not page.is_visible("#btn-ack")
    # the same request the button would send, with the viewer's own valid CSRF token: refused
    status = page.evaluate(
        """async (id) => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const r = await fetch('/incidents/' + id + '/ack', {method: 'POST', redirect: 'manual',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf_token=' + token});
            return r.status;
        }""",
        demo.incident,
    )
    assert status == 403
    assert demo.api(f"/api/incidents/{demo.incident}")["ack"] is None
    page.close()


@pytest.mark.timeout(120)
def test_csrf_less_and_cross_site_posts_are_refused(demo: Demo) -> None:
    assert demo.incident
    page = demo.signed_in("rita").new_page()
    page.goto(f"{demo.url}/incidents/{demo.incident}")
    status = page.evaluate(
        """async (id) => (await fetch('/incidents/' + id + '/label', {method: 'POST', redirect: 'manual',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'label=clean'})).status""",
        demo.incident,
    )
    assert status == 403  # signed in, same site, but no CSRF token
    # a hostile page elsewhere auto-submits a text/plain form to the label API with rita's cookie jar
    target = f"{demo.url}/api/incidents/{demo.incident}/label"
    html = (f'<form id=f method=post enctype="text/plain" action="{target}">'
            '<input name=\'{"label":"clean","x":"\' value=\'"}\'></form><script>document.getElementById("f").submit()</script>')
    with _serve(html) as evil, page.expect_response(target) as answer:
        page.goto(evil)
    assert answer.value.status == 403 and "refused" in answer.value.text()
    detail = demo.api(f"/api/incidents/{demo.incident}")
    assert detail["verdict"] is None and detail["ack"] is None
    assert not [r for r in read_labels(demo.settings.archive.root) if r.incident_id == demo.incident]
    page.close()


@pytest.mark.timeout(120)
def test_acknowledge_and_false_alarm_buttons_change_state_and_label_the_archive(demo: Demo) -> None:
    assert demo.incident
    ctx = demo.signed_in("rita")
    listing, page = ctx.new_page(), ctx.new_page()
    listing.goto(demo.url + "/incidents")
    listing.wait_for_selector("body[data-live-ready='1']")
    listing.evaluate("window.__notReloaded = true")
    page.goto(f"{demo.url}/incidents/{demo.incident}")
    page.click("#btn-ack")
    page.wait_for_selector("#incident-status:text('acknowledged')")
    assert "rita at" in page.inner_text("#ack-by")
    listing.wait_for_selector(f"tr[data-incident='{demo.incident}'][data-status='acknowledged']", timeout=15_000)
    assert listing.evaluate("window.__notReloaded") is True  # the other tab followed live
    page.click("#btn-false")
    page.wait_for_selector("#incident-verdict:text('false alarm')")
    labels = wait_until(lambda: [r for r in read_labels(demo.settings.archive.root) if r.incident_id == demo.incident], 10)
    assert [(r.label, r.source, r.by) for r in labels] == [("clean", "console", "rita")]
    ack = demo.api(f"/api/incidents/{demo.incident}")["ack"]
    assert ack["by"] == "rita"
    listing.close()
    page.close()


def shoot(page: Any, path: Path, full_page: bool = False) -> None:
    """A screenshot as a small PNG (a 128-colour palette when Pillow is there: UI, not photos)."""
    import io

    png = page.screenshot(full_page=full_page)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - the dev install has it (matplotlib)
        path.write_bytes(png)
        return
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    img.save(path, optimize=True)


class _serve:
    """A one-page web server on another origin (the attacker's site)."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def __enter__(self) -> str:
        return f"http://localhost:{self.srv.server_address[1]}/"

    def __exit__(self, *exc: object) -> None:
        self.srv.shutdown()
        self.srv.server_close()
