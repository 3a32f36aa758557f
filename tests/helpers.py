"""Reusable test helpers (real broker, real Redis; no mocks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from spillwatch.settings import Settings
from spillwatch.topic_reader import Received, TopicNotFound, TopicReader


def consume_all(settings: Settings, topic: str, timeout_s: float = 10.0, min_count: int = 1) -> list[Received]:
    """Read ``topic`` from the beginning (all partitions, no consumer group).

    Returns the records (``Received``: .key, .value bytes, .headers, .partition, .offset) once at
    least ``min_count`` were read, or whatever arrived when ``timeout_s`` ran out.
    ``min_count=0`` reads until the topic is drained (no new record for 1 s) or the timeout.
    """
    try:
        reader = TopicReader(settings, [topic], wait_topics_s=timeout_s)
    except TopicNotFound:
        return []
    with reader:
        return reader.read(min_count=min_count, timeout_s=timeout_s)


def wait_until(pred: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


def run_cli(settings: Settings, args: list[str], work_dir: Any, timeout_s: float = 60.0) -> Any:
    """``spillwatch <args>`` once, in a subprocess that receives ``settings`` the one way every
    child does (a private config file, no other SPILLWATCH_* variable); returns CompletedProcess."""
    import subprocess
    import sys
    import uuid
    from pathlib import Path

    from spillwatch.settings import REPO_ROOT, write_settings_file
    from spillwatch.supervisor import child_env

    cfg = write_settings_file(settings, Path(work_dir) / f"cli-{uuid.uuid4().hex[:8]}.settings.yaml")
    return subprocess.run([sys.executable, "-m", "spillwatch.cli", *args], env=child_env(cfg), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout_s)


def settled_alerts(settings: Settings, timeout_s: float = 30.0) -> list[Any]:
    """The spill alerts once the pipeline has settled: the aggregator's consumer group has
    committed every classification published so far, its outbox is empty, and the alerts topic is
    read to its end. A positive signal that nothing more (a duplicate, a late page) can arrive from
    what was sent: no "sleep and hope"."""
    import redis

    from spillwatch.events import SpillAlert
    from spillwatch.kafka import group_lag
    from spillwatch.redis_keys import RedisKeys

    t = settings.topics
    group = f"{settings.kafka.topic_prefix}spillwatch-aggregator"
    r = redis.Redis.from_url(settings.redis.url)
    try:
        wait_until(lambda: group_lag(settings, group, t.classifications) == 0, timeout_s, 0.3)
        wait_until(lambda: r.hlen(RedisKeys(settings.redis.key_prefix).agg_outbox) == 0, timeout_s, 0.1)
    finally:
        r.close()
    with TopicReader(settings, [t.spill_alerts]) as reader:
        reader.wait_caught_up(timeout_s)
        return [SpillAlert.from_bytes(rec.value) for rec in reader.snapshot() if rec.value]


def make_video(path: Any, n_frames: int = 30, fps: float = 10.0, size: tuple[int, int] = (640, 360), noise: bool = False) -> Any:
    """Write a short 'mp4v' video: a moving bright square on a grey floor (or random noise)."""
    import cv2
    import numpy as np

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    rng = np.random.default_rng(0)
    for i in range(n_frames):
        if noise:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            img = np.full((h, w, 3), 90, np.uint8)
            x = int((w - 60) * i / max(1, n_frames - 1))
            img[h // 2 - 30 : h // 2 + 30, x : x + 60] = (40, 200, 240)
        writer.write(img)
    writer.release()
    return path


class TopicTail(TopicReader):
    """A topic read from the beginning in the foreground: ``poll`` and ``wait_for`` (AssertionError
    on timeout, as a test expects)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, [topic])

    def wait_for(self, pred: Callable[[list[Any]], Any], timeout_s: float = 15.0) -> Any:
        try:
            return super().wait_for(pred, timeout_s)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from exc


class MjpegServer:
    """A local HTTP camera (multipart MJPEG at ``fps``) that can be stopped and restarted on its port."""

    def __init__(self, fps: float = 10.0, size: tuple[int, int] = (320, 240), port: int = 0) -> None:
        self.fps = fps
        self.size = size
        self.port = port
        self.frames_served = 0
        self._srv: Any = None
        self._alive: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> "MjpegServer":
        import http.server
        import socketserver
        import threading

        import cv2
        import numpy as np

        alive = threading.Event()
        alive.set()
        outer = self
        w, h = self.size

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while alive.is_set():
                        img = np.full((h, w, 3), (i * 10) % 255, np.uint8)
                        jpg = cv2.imencode(".jpg", img)[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                        self.wfile.write(jpg + b"\r\n")
                        outer.frames_served += 1
                        i += 1
                        time.sleep(1 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._srv = Server(("127.0.0.1", self.port), Handler)
        self.port = self._srv.server_address[1]
        self._alive = alive
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._alive.clear()
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None
