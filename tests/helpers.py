"""Reusable test helpers (real broker, real Redis; no mocks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from spillwatch.settings import Settings


def consume_all(settings: Settings, topic: str, timeout_s: float = 10.0, min_count: int = 1) -> list[Any]:
    """Read ``topic`` from the beginning (all partitions, no consumer group) with kafka-python.

    Returns the records (``ConsumerRecord``: .key, .value bytes, .headers, .partition, .offset)
    once at least ``min_count`` were read, or whatever arrived when ``timeout_s`` ran out.
    ``min_count=0`` reads until the topic is drained (no new record for 1 s) or the timeout.
    """
    from kafka import TopicPartition

    from spillwatch.kafka import make_consumer

    consumer = make_consumer(settings, [], group_id=None, enable_auto_commit=False)
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            time.sleep(0.1)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=500)
            got = [r for recs in batch.values() for r in recs]
            if got:
                out.extend(got)
                last_new = time.monotonic()
            if min_count and len(out) >= min_count:
                break
            if not min_count and time.monotonic() - last_new > 1.0:
                break
        return out
    finally:
        consumer.close()


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


class TopicTail:
    """Reads a topic from the beginning and keeps everything read (no group: no join delay)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import TopicPartition

        from spillwatch.kafka import make_consumer

        self.records: list[Any] = []
        self._c = make_consumer(settings, [], group_id=None, enable_auto_commit=False)
        parts = wait_until(lambda: self._c.partitions_for_topic(topic), timeout_s=10)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._c.assign(tps)
        self._c.seek_to_beginning(*tps)

    def poll(self, timeout_ms: int = 200) -> list[Any]:
        batch = self._c.poll(timeout_ms=timeout_ms, max_records=1000)
        got = [r for recs in batch.values() for r in recs]
        self.records.extend(got)
        return got

    def wait_for(self, pred: Callable[[list[Any]], Any], timeout_s: float = 15.0) -> Any:
        """Poll until ``pred(all records so far)`` is truthy; returns its value."""

        def step() -> Any:
            self.poll()
            return pred(self.records)

        return wait_until(step, timeout_s=timeout_s, interval_s=0)

    def close(self) -> None:
        self._c.close()


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
