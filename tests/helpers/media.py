"""Test media: a short video file, and a local HTTP (MJPEG) camera that can stop and come back."""

from __future__ import annotations

import time
from typing import Any


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

    def start(self) -> MjpegServer:
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

            def do_GET(self) -> None:
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
