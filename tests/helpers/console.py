"""Helpers for the console tests: settings for a console on the test stack, signing in over HTTP,
raw-socket requests, publishing events the console reads."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import free_port
from spillwatch.events import CameraHealth, CameraState, Classification, SpillAlert
from spillwatch.settings import Settings

PASSWORD = "correct-horse-battery"


def console_settings(local_stack: Any, tmp: Path, *, cameras: tuple[str, ...] = (), **console: Any) -> Settings:
    """Settings on the session's local stack, with a namespace of their own and a console on a free port."""
    from spillwatch.kafka import create_topics

    ns = uuid.uuid4().hex[:8]
    cfg = {"port": free_port(), "cookie_secure": False, "metrics_port": free_port(), "thumbnail_interval_s": 1.0} | console
    s = Settings(
        kafka={"bootstrap": local_stack.bootstrap, "profile": "local", "topic_prefix": f"con.{ns}.", "partitions": 2},
        redis={"url": local_stack.redis_url, "key_prefix": f"con:{ns}"},
        data_dir=tmp / "data",
        cameras=[{"id": c, "source": "unused.mp4", "fps": 2.0} for c in cameras],
        producer={"heartbeat_s": 1.0, "offline_after_s": 3.0, "stall_after_s": 2.0},
        alerting={"evidence_dir": tmp / "evidence", "channels": ["console"]},
        archive={"root": str(tmp / "archive")},
        console=cfg,
    )
    create_topics(s, partitions=2)
    return s


def publish(settings: Settings, topic: str, items: list[tuple[str, bytes]]) -> None:
    from spillwatch.kafka import make_producer

    p = make_producer(settings)
    try:
        for key, value in items:
            p.send(topic, key=key.encode(), value=value)
        p.flush(10)
    finally:
        p.close(5)


def publish_alerts(settings: Settings, *alerts: SpillAlert) -> None:
    publish(settings, settings.topics.spill_alerts, [(a.camera_id, a.to_bytes()) for a in alerts])


def health(camera: str, state: CameraState, at: datetime, fps: float = 2.0, last_frame: datetime | None = None,
           error: str | None = None) -> CameraHealth:
    return CameraHealth(camera_id=camera, state=state, fps=fps, last_frame_time=last_frame or at, at=at, error=error)


def classification(camera: str, seq: int, at: datetime, p: float, spill_map: list[list[int]] | None = None) -> Classification:
    return Classification(camera_id=camera, seq=seq, capture_time=at, spill_prob=p, spill_map=spill_map, model_version="test-v1")


def sign_in(base_url: str, user: str, password: str = PASSWORD) -> httpx.Client:
    """An httpx client signed in through the login form (login CSRF cookie + field), like a browser.
    Cookies travel in an explicit header: httpx keeps ``Secure`` cookies from plain-http answers."""
    anon = httpx.Client(base_url=base_url, timeout=10)
    token = anon.get("/login").cookies["spillwatch_login"]
    r = anon.post("/login", data={"username": user, "password": password, "csrf_token": token, "next": "/incidents"},
                  headers={"Cookie": f"spillwatch_login={token}"})
    assert r.status_code == 303 and r.headers["location"] == "/incidents", (r.status_code, r.text[:300])
    sid = r.cookies["spillwatch_session"]
    anon.close()
    return httpx.Client(base_url=base_url, timeout=10, headers={"Cookie": f"spillwatch_session={sid}"})


def csrf_of(client: httpx.Client) -> str:
    """The session's CSRF token, read from a page's meta tag (as console.js does)."""
    import re

    html = client.get("/cameras").text
    m = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def raw_http(port: int, data: bytes, *, wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send raw bytes on a fresh connection, then stay silent; returns (everything the server sent
    until it closed the connection or ``wait_s`` ran out, seconds until then)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        if data:
            s.sendall(data)
        chunks = []
        s.settimeout(wait_s)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except TimeoutError:
            pass
        return b"".join(chunks), time.monotonic() - t0


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])
