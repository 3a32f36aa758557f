"""Prometheus metrics of every service, defined in one place (prometheus_client).

A service calls ``start_metrics_server(port)`` once (port from its settings; None = off) and
updates the metrics below. Names follow Prometheus conventions (``_total`` counters, base units).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# producers
FRAMES_PUBLISHED = Counter("spillwatch_frames_published_total", "Frames published to Kafka", ["camera"])
FRAMES_DROPPED = Counter("spillwatch_frames_dropped_total", "Frames not published", ["camera", "reason"])
CAMERA_STATE = Gauge("spillwatch_camera_state", "1 for the camera's current health state", ["camera", "state"])
PUBLISH_ERRORS = Counter("spillwatch_publish_errors_total", "Kafka publish failures", ["topic"])

# classifier workers
FRAMES_CLASSIFIED = Counter("spillwatch_frames_classified_total", "Frames classified", ["camera"])
FRAMES_REUSED = Counter(
    "spillwatch_frames_reused_total", "Frames whose scene had not changed: the camera's last result reused, no inference", ["camera"]
)
INFERENCE_SECONDS = Histogram(
    "spillwatch_inference_seconds",
    "ONNX inference time per taken batch (all its inference runs)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
BATCH_SIZE = Histogram("spillwatch_inference_batch_size", "Frames per inference run (at most worker.inference_batch)",
                       buckets=(1, 2, 4, 8, 16, 32, 64))
DEAD_LETTERS = Counter("spillwatch_dead_letters_total", "Records sent to a dead-letter topic", ["topic", "reason"])
CONSUMER_LAG = Gauge("spillwatch_consumer_lag", "Records behind the end of the partition", ["topic", "partition"])

# aggregator
INCIDENTS = Counter("spillwatch_incidents_total", "Incident transitions", ["camera", "state"])
INCIDENTS_OPEN = Gauge("spillwatch_incidents_open", "Open (confirmed, not cleared) incidents", ["camera"])
FRAMES_SUPPRESSED = Counter(
    "spillwatch_frames_suppressed_total", "Frames with map cells a learned false alarm suppressed", ["camera"]
)
DUPLICATES_SKIPPED = Counter("spillwatch_duplicates_skipped_total", "Redelivered records ignored", ["stage"])
# camera monitor (in the aggregator service)
CAMERA_OUTAGES = Counter(
    "spillwatch_camera_outages_total", "Camera outage transitions (offline, stalled, recovered)", ["camera", "state"]
)

# alerting
PAGES = Counter(
    "spillwatch_pages_total", "Page attempts by outcome (sent, failed, retried, dead); kind: spill or camera (outage)",
    ["channel", "outcome", "kind"],
)
PAGE_LATENCY = Histogram(
    "spillwatch_page_latency_seconds",
    "Capture of the confirming frame -> page delivered",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120),
)

# console (camera state as the console reads it from `camera-health`)
LAST_FRAME_TIMESTAMP = Gauge(
    "spillwatch_last_frame_timestamp_seconds", "Capture time of the camera's last frame (unix s)", ["camera"]
)
CAMERA_FPS = Gauge("spillwatch_camera_fps", "Frames per second the camera actually delivers", ["camera"])
CAMERA_UP = Gauge("spillwatch_camera_online", "1 while the camera is online (0: stalled or offline)", ["camera"])
CAMERA_OUTAGE = Gauge(
    "spillwatch_camera_outage", "1 while the camera has an open outage (paged; from camera-alerts)", ["camera"]
)

# archive
FRAMES_ARCHIVED = Counter("spillwatch_frames_archived_total", "Frames written to the archive", ["camera", "reason"])

_started: set[int] = set()


def start_metrics_server(port: int | None, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on ``port`` (idempotent per port; None disables)."""
    if port is None or port in _started:
        return
    start_http_server(port, addr=addr)
    _started.add(port)
