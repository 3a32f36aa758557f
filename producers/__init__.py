"""Camera producers: sample frames from files, streams, devices and image folders, downsize,
JPEG-encode and publish them to Kafka keyed by camera id, with camera-health heartbeats.

Python API (used by the demo and the benchmark in-process)::

    from producers import run_cameras
    stats = run_cameras(settings, settings.cameras, stop_event, speed=1.0)

Heavy modules (cv2, kafka) load on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_cameras", "CameraStats"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from producers import runner

        return getattr(runner, name)
    raise AttributeError(name)
