"""Settings: environment variables (``SPILLWATCH_...``, nested with ``__``) over a YAML config file.

The YAML file (``SPILLWATCH_CONFIG=path``) may hold any section, and normally lists the cameras::

    cameras:
      - id: dock-1
        source: rtsp://user:pass@10.0.0.5/stream1   # or a file, "device:0", "folder:/path"
        fps: 2
        zone: [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]   # normalised polygon, optional
    aggregator:
      window: 5
      confirm_k: 3

Environment wins over the file (``SPILLWATCH_KAFKA__BOOTSTRAP=kafka:9092``). No host or secret is
hard-coded beyond loopback defaults that match ``spillwatch stack up``.
"""

from __future__ import annotations

import json
import os
import re
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from spillwatch.events import DEAD_LETTER_PAYLOAD_BYTES, MAX_DEAD_LETTER_PAYLOAD_BYTES, MAX_EVENT_BYTES, MAX_FRAME_BYTES
from spillwatch.redact import redact_url
from spillwatch.topics import Topics

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models" / "spillwatch.onnx"

# Ports of the embedded local stack (chosen away from the standard 9092/6379 so a system Kafka or
# Redis on this machine is never touched).
LOCAL_BROKER_PORT = 19092
LOCAL_REDIS_PORT = 16379


class SettingError(ValueError):
    """A validator's error about one setting (``loc`` relative to the model that raises it), so the
    message names that setting rather than its whole section."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Section(BaseModel):
    """A settings section: unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = f"127.0.0.1:{LOCAL_BROKER_PORT}"
    # "local": the embedded Tansu broker (short session timeouts, no idempotent producer);
    # "apache": Apache Kafka at a site (idempotent producer, normal timeouts).
    profile: Literal["local", "apache"] = "local"
    topic_prefix: str = ""
    partitions: int = Field(default=8, ge=1, description="partitions of frames/classifications")
    replication_factor: int = Field(default=1, ge=1)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(
        default=None, description="PEM CA bundle that signs the brokers' certificates (SSL/SASL_SSL); None = system CAs"
    )

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


class RedisSettings(_Section):
    url: str = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
    key_prefix: str = "spillwatch"


class CameraConfig(_Section):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    source: str = Field(description="video file, rtsp:// or http(s):// URL, 'device:N', or 'folder:PATH'")
    fps: float = Field(default=2.0, gt=0, le=30, description="sampling rate published to Kafka")
    loop: bool = False
    max_width: int = Field(default=480, ge=64, description="frames are downsized to this width")
    jpeg_quality: int = Field(default=85, ge=30, le=100)
    threshold: float | None = Field(default=None, ge=0, le=1, description="overrides the model's")
    window: int | None = Field(default=None, ge=1)
    confirm_k: int | None = Field(default=None, ge=1)
    zone: list[tuple[float, float]] | None = Field(
        default=None, description="normalised polygon; only spill inside it counts"
    )
    outage_grace_s: float | None = Field(
        default=None, ge=0, le=86400, allow_inf_nan=False,
        description="this camera's outage grace period (overrides outages.grace_s)",
    )
    enabled: bool = True

    def __repr_args__(self) -> Any:
        # a settings dump or an error that shows a camera never shows its credentials
        for key, value in super().__repr_args__():
            yield key, (redact_url(value) if key == "source" and isinstance(value, str) else value)

    @field_validator("zone")
    @classmethod
    def _zone_ok(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError("a zone polygon needs at least 3 points")
        for x, y in v:
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError("zone points are normalised (0..1)")
        return v


class ProducerSettings(_Section):
    heartbeat_s: float = Field(default=5.0, gt=0, description="camera-health heartbeat interval")
    stall_after_s: float = Field(default=5.0, gt=0, description="no frame this long -> stalled")
    offline_after_s: float = Field(default=15.0, gt=0, description="grace period before offline")
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    max_frame_bytes: int = Field(
        default=1_000_000, gt=0, description="frames larger than this (or than limits.frame_bytes) are not published"
    )
    max_pending_frames: int = Field(
        default=1000, ge=1, description="frames queued or in flight to the broker; above this new frames are dropped"
    )
    seq_from_clock: bool = Field(
        default=True,
        description="start each camera's frame seq at the wall clock in ms, so seq keeps increasing across producer restarts",
    )
    metrics_port: int | None = Field(default=None, description="Prometheus /metrics port; None disables")
    camera_sources: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="camera id -> source URL with credentials; replaces that camera's source (give it to the producer only, e.g. as a secrets_dir file)",
    )


class LimitSettings(_Section):
    """What one record may cost, checked by every consumer before any other work (hostile input)."""

    frame_bytes: int = Field(default=MAX_FRAME_BYTES, ge=64 * 1024, description="largest frames record accepted")
    event_bytes: int = Field(
        default=MAX_EVENT_BYTES, ge=4096, description="largest classification / spill-alert / camera-health record accepted"
    )
    image_pixels: int = Field(
        default=3840 * 2160, ge=64 * 64, description="largest frame image (width x height from the JPEG header) decoded"
    )
    image_scans: int = Field(default=32, ge=1, description="most JPEG scans a frame image may have (progressive-JPEG CPU bomb)")
    capture_ahead_s: float = Field(
        default=120.0, gt=0, description="a capture time further ahead of the reader's clock is dead-lettered (forged or skewed)"
    )
    dead_letter_payload_bytes: int = Field(
        default=DEAD_LETTER_PAYLOAD_BYTES,
        ge=0,
        le=MAX_DEAD_LETTER_PAYLOAD_BYTES,
        description="a dead letter keeps the rejected record whole up to this size, else a prefix + size + sha256",
    )
    record_attempts: int = Field(
        default=3, ge=1, description="a record whose processing fails this often (not an outage) is dead-lettered and skipped"
    )


class WorkerSettings(_Section):
    model_path: Path = DEFAULT_MODEL
    batch_size: int = Field(
        default=32, ge=1, le=1024,
        description="records a worker takes from the stream at once: one batch, checked, gated, sent and acked together "
                    "(its frames to infer run in runs of inference_batch; at most 1024, the default stream buffer)",
    )
    inference_batch: int = Field(
        default=8, ge=1, le=256,
        description="most frames one inference run takes (each run cut into the lanes); larger runs were slower a frame "
                    "with one ONNX thread (docs/performance.md, Takes and runs)",
    )
    batch_timeout_s: float = Field(
        default=0.05, gt=0, description="longest a frame waits for its batch to fill (latency bound)"
    )
    intra_op_threads: int = Field(default=2, ge=1, description="cores a worker's inference may use (ONNX Runtime threads)")
    inference_split: Literal["batch", "operators"] = Field(
        default="batch",
        description="how those threads share a batch: 'batch' runs its frames in that many lanes at once (decode, "
                    "preprocess and a single-threaded ONNX Runtime run each); 'operators' gives ONNX Runtime the threads "
                    "to split every operator of one run (slower in a worker: docs/performance.md, Lanes)",
    )
    stream_buffer: int = Field(
        default=1024, ge=64, le=65_536,
        description="frames a classifier worker holds fetched but unprocessed (Faust stream_buffer_maxsize): past 80 % full "
                    "Faust stops fetching until the worker has emptied it, and a Faust consumer that fetches nothing for 300 s "
                    "leaves its group, so 80 % of this must take the slowest worker well under 300 s",
    )
    web_port: int | None = Field(default=None, description="Faust web port; None runs without web")
    fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=1500, description="longest a Faust consumer's fetch waits at the broker (latency bound)"
    )
    metrics_port: int | None = None


class AggregatorSettings(_Section):
    window: int = Field(default=5, ge=1, description="n: frames in the sliding window")
    confirm_k: int = Field(default=3, ge=1, description="k: frames above threshold to confirm")
    clear_threshold_ratio: float = Field(
        default=0.5, gt=0, le=1, description="hysteresis: below threshold*ratio counts as clear"
    )
    clear_n: int = Field(default=10, ge=1, description="consecutive clear frames to clear an incident")
    cooldown_s: float = Field(default=60.0, ge=0, description="after clearing, no new incident for this long")
    escalate_after_s: float = Field(default=300.0, gt=0, description="still present, unacknowledged -> escalated")
    state_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="global spill threshold; None = the model card's threshold"
    )
    max_gap_s: float = Field(default=30.0, gt=0, description="capture-time gap that empties a camera's window")
    stale_after_s: float = Field(
        default=600.0,
        gt=0,
        description="a classification captured this long before the camera's newest one is stale (dropped); "
        "must exceed limits.capture_ahead_s",
    )
    tick_interval_s: float = Field(default=2.0, gt=0, description="escalation timer and outbox flush period")
    batch_size: int = Field(
        default=64, ge=1, le=10_000,
        description="classifications decided in one Redis transaction (one round trip set per batch instead of per record)",
    )
    batch_timeout_s: float = Field(
        default=0.02, gt=0, le=5,
        description="longest wait for a batch to fill: at low rates every record waits at most this long",
    )
    evidence_frame_ttl_s: int = Field(
        default=60, gt=0, description="classifier keeps suspicious JPEGs this long for the evidence snapshot"
    )
    metrics_port: int | None = None

    @model_validator(mode="after")
    def _k_le_n(self) -> AggregatorSettings:
        if self.confirm_k > self.window:
            raise SettingError(
                ("confirm_k",), f"{self.confirm_k} > aggregator.window {self.window} (a spill could never be confirmed)"
            )
        return self


class OutageSettings(_Section):
    """Camera outage paging (processors/camera_outage.py): the camera monitor runs in the aggregator
    service, reads ``camera-health`` and writes ``camera-alerts``; alerting pages them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(default=True, description="watch the configured cameras and page their outages")
    grace_s: float = Field(
        default=60.0, ge=0, le=86400,
        description="a camera stalled, offline or silent this long opens an outage (one page); cameras[].outage_grace_s overrides",
    )
    recovery_s: float = Field(
        default=30.0, ge=0, le=86400,
        description="frames must flow steadily this long to close an outage (one recovery notice); shorter flaps stay in it",
    )
    silence_s: float | None = Field(
        default=None, gt=0, le=86400,
        description="no heartbeat this long = silent (a producer that died); None: 3 x producer.heartbeat_s",
    )
    tick_interval_s: float = Field(
        default=2.0, gt=0, le=60, description="how often the monitor looks for silent cameras and flushes its outbox"
    )


class AlertingSettings(_Section):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    channels: list[str] = Field(default_factory=lambda: ["console"])
    escalation_channels: list[str] = Field(default_factory=list)
    camera_channels: list[str] | None = Field(
        default=None,
        description="channels paged for camera outages and their recovery; None: the same as channels, []: none",
    )
    escalate_after_s: float = Field(default=300.0, gt=0, description="unacknowledged this long -> escalate")
    fallback_channels: list[str] = Field(
        default_factory=list,
        description="channels that also get a page while a primary channel has been failing for fallback_after_s",
    )
    fallback_after_s: float = Field(
        default=300.0, gt=0, description="a channel failing this long (first failed try of its outage) -> fallback_channels"
    )
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC key of the webhook signature (a secret: environment or secrets_dir, never argv)"
    )
    webhook_allow_unsigned: bool = Field(
        default=False, description="send webhook pages unsigned when webhook_secret is unset (else a config error)"
    )
    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming-webhook URL (a secret)")
    pagerduty_url: str | None = None
    pagerduty_routing_key: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_to: list[str] = Field(default_factory=list)
    max_age_s: float = Field(
        default=3600.0, gt=0, description="a failing page is retried until it is this old, then dead-lettered"
    )
    max_tries: int | None = Field(default=None, ge=1, description="optional cap on a page's tries (None: max_age_s only)")
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0, description="longest wait between two tries of a page")
    request_timeout_s: float = Field(default=5.0, gt=0)
    evidence_dir: Path = Path("var/evidence")
    dry_run: bool = Field(default=False, description="record pages without calling any channel (replay)")
    metrics_port: int | None = None
    group_id: str = Field(
        default="spillwatch-alerting", description="consumer group on spill-alerts (kafka.topic_prefix is prepended)"
    )
    public_base_url: str | None = Field(
        default=None,
        description="URL where responders reach the console (https://spillwatch.example); pages then link to its incident page",
    )
    idempotency_ttl_s: int = Field(default=30 * 24 * 3600, gt=0, description="how long 'page sent' keys are kept")
    inflight_lease_s: float = Field(
        default=30.0, gt=0, description="a page being delivered is retried by another run after this (crash)"
    )
    delivery_workers: int = Field(default=8, ge=1, description="pages delivered concurrently")
    ack_ttl_s: int = Field(default=365 * 24 * 3600, gt=0, description="how long acknowledgements are kept")

    @field_validator("webhook_secret", "slack_webhook_url", "pagerduty_routing_key", "smtp_password", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, v: Any) -> Any:
        # An empty secrets file or variable means "not set", never "sign with the empty key".
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        return None if isinstance(raw, str) and not raw.strip() else v


class ConsoleSettings(_Section):
    """The operator console (console/): web pages + JSON API, sign-in, live updates."""

    host: str = Field(default="127.0.0.1", description="listen address (loopback by default; TLS belongs to a reverse proxy)")
    port: int = Field(default=8088, ge=1, le=65535, description="HTTP port of the console")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"],
        description="Host header names the console answers (DNS-rebinding guard); the host of alerting.public_base_url is added",
    )
    cookie_secure: bool = Field(
        default=True, description="session cookie only over HTTPS (browsers treat http://localhost/127.0.0.1 as secure)"
    )
    session_ttl_s: int = Field(default=12 * 3600, gt=0, description="a sign-in lasts this long")
    admin_password: SecretStr | None = Field(
        default=None, description="when no user exists yet, the console creates user 'admin' with this password at start"
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0, description="a request's head and body must arrive within this (slow or idle clients are cut off)"
    )
    keep_alive_s: int = Field(default=5, ge=1, description="idle keep-alive connections are closed after this")
    max_body_bytes: int = Field(default=64 * 1024, gt=0, description="larger request bodies are refused (413)")
    max_connections: int = Field(default=256, ge=8, description="concurrent connections + requests; above this: 503")
    login_max_failures: int = Field(default=10, ge=1, description="failed sign-ins of one user before a lockout")
    login_lockout_s: int = Field(default=300, gt=0, description="lockout after login_max_failures")
    thumbnail_interval_s: float = Field(
        default=10.0, ge=0, description="how often the newest frame of each camera is read from `frames` (0: no thumbnails)"
    )
    timeline_before_s: float = Field(default=60.0, ge=0, description="incident score timeline: seconds before first_seen")
    timeline_after_s: float = Field(default=60.0, ge=0, description="incident score timeline: seconds after confirmation")
    incident_retention_days: float = Field(default=90.0, gt=0, description="the console's incident index keeps this long")
    metrics_port: int | None = None


class ArchiveSettings(_Section):
    root: str = "var/archive"
    low_score: float = Field(default=0.2, ge=0, le=1, description="frames above this are always kept")
    sample_every: int = Field(default=50, ge=1, description="keep 1 in N ordinary frames")
    incident_before_s: float = Field(default=30.0, ge=0)
    incident_after_s: float = Field(default=30.0, ge=0)
    max_age_days: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=10 * 1024**3, gt=0)
    metrics_port: int | None = None
    incident_max_s: float = Field(
        default=1800.0, gt=0, description="an open (never cleared) incident keeps every frame this long after confirmation"
    )
    ring_max_frames: int = Field(default=240, ge=1, description="per-camera cap of the 'before' ring buffer")
    ring_slack_s: float = Field(
        default=30.0, ge=0, description="the ring holds incident_before_s + this (alerts name first_seen late)"
    )
    join_max_frames: int = Field(default=4096, ge=1, description="frames waiting for their classification (all cameras)")
    join_ttl_s: float = Field(default=120.0, gt=0, description="a frame unclassified this long is dropped from the join")
    keep_labelled: bool = Field(default=True, description="labelled frames are exempt from the age limit")
    retention_interval_s: float = Field(default=600.0, gt=0, description="how often the archiver applies retention")
    label_sync_s: float = Field(default=30.0, gt=0, description="how often the archiver copies ack labels from Redis")
    group_id: str = Field(default="spillwatch-archiver", description="consumer group of the archiver")


class SuppressionSettings(_Section):
    """Learned per-camera suppression of false alarms (docs/suppression.md)."""

    enabled: bool = Field(default=True, description="workers mark firing spill-map cells that match a learned false alarm")
    margin: float = Field(
        default=10.0, gt=0, le=128,
        description="look tolerance per appearance feature (0..255 units); a cell's tolerance is margin + 2 x its learned spread, at most 2 x margin",
    )
    learn_min_frames: int = Field(default=2, ge=1, description="a cell is learned when it fired in at least this many frames of the incident")
    learn_max_frames: int = Field(default=64, ge=1, le=1000, description="frames of an incident kept for learning (the first ones)")
    learn_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, description="how long after an incident a false-alarm verdict can still teach")
    ttl_days: float = Field(default=30.0, gt=0, description="a suppression expires this long after it was made or last confirmed")
    warn_area: float = Field(default=0.10, gt=0, le=1, description="warn when a camera's suppressions cover more than this share of the frame")
    max_area: float = Field(default=0.25, gt=0, le=1, description="refuse (unless forced) a suppression that takes a camera above this share of the frame")
    refresh_s: float = Field(default=2.0, gt=0, description="how often workers re-read the suppressions (one Redis GET when nothing changed)")

    @model_validator(mode="after")
    def _areas(self) -> SuppressionSettings:
        if self.warn_area > self.max_area:
            raise ValueError(f"warn_area {self.warn_area:g} must not exceed max_area {self.max_area:g}")
        return self


class GatingSettings(_Section):
    """Change gating in the classifier workers (processors/gating.py, docs/performance.md): a frame
    whose scene did not change since the camera's last classified frame reuses that result."""

    enabled: bool = Field(default=True, description="skip inference on frames whose scene did not change (reused results carry inferred=false)")
    refresh_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="classify at least once per this many seconds of capture time per camera, changed or not",
    )
    threshold: float = Field(
        default=0.3, gt=0, le=10,
        description="a block of the 8x8 grid changed when its mean absolute difference to the last classified frame reaches this "
                    "(units of the frame's own contrast, after brightness normalisation)",
    )
    min_blocks: int = Field(default=1, ge=1, le=64, description="changed blocks that make a frame 'changed'")
    warm_ratio: float = Field(
        default=0.25, gt=0, le=1,
        description="a camera whose last spill probability reached threshold x this (or its clear level, if lower) is 'warm': its "
                    "frames are compared with warm_threshold instead of threshold, so a rising score is not frozen by a reused result",
    )
    hot_margin: float = Field(
        default=1.0, ge=0, le=10,
        description="a camera whose last spill probability came within this many log-odds of its threshold (or reached its clear "
                    "level) is 'hot': classified on every frame (until it settles). Keep it above what a reused result can under-state a fresh "
                    "one by while the camera is warm (0.84 measured with warm_threshold 0.1: docs/performance.md)",
    )
    warm_threshold: float = Field(
        default=0.1, ge=0, le=10,
        description="the block threshold of a warm camera (units as threshold, at most threshold): above sensor and JPEG noise, "
                    "below what light flicker can do; 0: a warm camera is classified on every frame (as before 2026-12-02)",
    )
    hot_hold_s: float = Field(
        default=5.0, ge=0, le=3600,
        description="after a hot score a camera stays hot (classified on every frame) for this long (capture time), and after "
                    "a warm score warm: one low score in a rising series does not freeze it",
    )
    settle_frames: int = Field(
        default=5, ge=0, le=1000,
        description="a camera whose last this many inferred frames in a row (at least its aggregator window) all scored "
                    "settle_margin log-odds above its threshold is 'settled' (a confirmed spill waiting to be cleaned): frames "
                    "that did not change beyond warm_threshold reuse its result until the refresh; 0: classified on every frame",
    )
    settle_margin: float = Field(
        default=2.0, ge=0, le=20,
        description="log-odds above a camera's threshold that a score must reach to count towards settling",
    )
    max_cameras: int = Field(default=100_000, ge=1, description="cameras one worker keeps a reference frame for (least recently seen forgotten first)")

    @model_validator(mode="after")
    def _warm_is_stricter(self) -> GatingSettings:
        if self.warm_threshold > self.threshold:
            raise ValueError(f"warm_threshold {self.warm_threshold:g} must not exceed threshold {self.threshold:g} "
                             "(a warm camera is held to the stricter comparison)")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPILLWATCH_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    config: Path | None = Field(default=None, description="YAML config file (cameras and any section)")
    secrets_dir: Path | None = Field(
        default=None,
        description="folder of secret files, one per setting, named like its variable (spillwatch_alerting__webhook_secret); Docker secrets: /run/secrets",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"
    data_dir: Path = Field(default=Path("var"), description="working data of the services (Faust state, ...)")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    cameras: list[CameraConfig] = Field(default_factory=list)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    aggregator: AggregatorSettings = Field(default_factory=AggregatorSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    outages: OutageSettings = Field(default_factory=OutageSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    suppression: SuppressionSettings = Field(default_factory=SuppressionSettings)
    gating: GatingSettings = Field(default_factory=GatingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {}) or {}
        path = config_path(init_kwargs.get("config"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets = secrets_dir_path(init_kwargs.get("secrets_dir"))
        if secrets is not None:
            # after the environment, before the shared config file: a service's own secret files
            # win over what every service reads
            sources.append(NestedSecretsSettingsSource(file_secret_settings, secrets_dir=secrets, secrets_dir_missing="error"))
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.aggregator.stale_after_s <= self.limits.capture_ahead_s:
            raise ValueError(
                f"aggregator.stale_after_s {self.aggregator.stale_after_s:g} must exceed limits.capture_ahead_s "
                f"{self.limits.capture_ahead_s:g} (else one frame from the future could make the present stale)"
            )
        return self

    @model_validator(mode="after")
    def _cameras_consistent(self) -> Settings:
        ids = [c.id for c in self.cameras]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise SettingError(("cameras",), f"duplicate camera ids: {sorted(dup)}")
        for i, c in enumerate(self.cameras):
            window = c.window or self.aggregator.window
            k = c.confirm_k or self.aggregator.confirm_k
            if k > window:
                k_from = f"cameras.{i}.confirm_k" if c.confirm_k else "aggregator.confirm_k"
                w_from = f"cameras.{i}.window" if c.window else "aggregator.window"
                raise SettingError(
                    ("cameras", i),
                    f"camera {c.id}: confirm_k {k} ({k_from}) > window {window} ({w_from}); a spill could never be confirmed",
                )
        return self

    @model_validator(mode="after")
    def _silence_longer_than_heartbeats(self) -> Settings:
        silence = self.outages.silence_s
        if silence is not None and silence <= self.producer.heartbeat_s:
            raise SettingError(
                ("outages", "silence_s"),
                f"{silence} <= producer.heartbeat_s {self.producer.heartbeat_s} (every camera would look silent between two heartbeats)",
            )
        return self

    @model_validator(mode="after")
    def _camera_sources(self) -> Settings:
        """``producer.camera_sources`` (a secret the producer alone receives) replaces the sources
        of the cameras it names; naming a camera that is not configured is an error."""
        sources = self.producer.camera_sources
        if not sources:
            return self
        unknown = sorted(set(sources) - {c.id for c in self.cameras})
        if unknown:
            raise ValueError(f"producer.camera_sources names cameras that are not configured: {unknown}")
        self.cameras = [
            c.model_copy(update={"source": sources[c.id].get_secret_value()}) if c.id in sources else c for c in self.cameras
        ]
        return self

    @property
    def topics(self) -> Topics:
        return self.kafka.topics

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def faust_datadir(self, app_id: str) -> Path:
        """Where a Faust app keeps its local files (under ``data_dir``, not the working directory)."""
        return self.data_dir / "faust" / app_id


class ConfigError(ValueError):
    """Invalid configuration: one short message that names the setting and where it came from."""


def config_path(explicit: Path | str | None = None) -> Path | None:
    """The YAML config file: ``explicit`` (an init ``config=``), else ``SPILLWATCH_CONFIG``, else none.
    A named file that does not exist is an error (a typo must not run a site on the defaults)."""
    raw = explicit if explicit is not None else os.environ.get("SPILLWATCH_CONFIG")
    if raw is None or str(raw) == "":
        return None
    p = Path(raw)
    named_by = "--config" if explicit is not None else "SPILLWATCH_CONFIG"
    if not p.is_file():
        raise ConfigError(f"config file {p} ({named_by}): no such file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} ({named_by}): cannot read it ({type(exc).__name__}: {exc})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {p}: must be a mapping of sections (kafka:, cameras:, ...)")
    return p


def secrets_dir_path(explicit: Path | str | None = None) -> Path | None:
    """The secrets folder: ``explicit`` (an init ``secrets_dir=``), else ``SPILLWATCH_SECRETS_DIR``,
    else none. A named folder that does not exist, or that holds a file no setting reads (a typo
    would silently run without the secret), is a config error."""
    raw = explicit if explicit is not None else os.environ.get("SPILLWATCH_SECRETS_DIR")
    if raw is None or str(raw) == "":
        return None
    p = Path(raw)
    if not p.is_dir():
        raise ConfigError(f"secrets_dir {p} (SPILLWATCH_SECRETS_DIR): no such folder")
    known = {n.lower() for n in setting_env_names()}
    for f in sorted(p.iterdir()):
        if f.name.startswith("."):
            continue  # Kubernetes' ..data links, editor files
        if f.name.lower() not in known:
            raise ConfigError(f"secrets_dir {p}: file {f.name!r} is not a setting (expected names like spillwatch_alerting__webhook_secret)")
    return p


def setting_env_names(model: type[BaseModel] | None = None, prefix: str = "SPILLWATCH_") -> set[str]:
    """Every variable name a setting is read from (nested sections joined with ``__``)."""
    model = Settings if model is None else model
    out: set[str] = set()
    for name, f in model.model_fields.items():
        sub = f.annotation if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel) else None
        if sub is not None:
            out |= setting_env_names(sub, f"{prefix}{name.upper()}__")
        out.add(f"{prefix}{name.upper()}")
    return out


def _env_name(loc: tuple[Any, ...]) -> str:
    return "SPILLWATCH_" + "__".join(str(p).upper() for p in loc)


def _source_of(loc: tuple[Any, ...], path: Path | None) -> str:
    """Where a setting came from: the environment variable when it is set, else the config file."""
    for n in range(len(loc), 0, -1):
        name = _env_name(tuple(p for p in loc[:n] if not isinstance(p, int)))
        if name in os.environ:
            return f"environment {name}"
    return f"config file {path}" if path is not None else "defaults"


def setting_source(name: str, path: Path | None = None) -> str:
    """Where the setting ``name`` (``section.key``) comes from: its environment variable when set,
    else the config file (``path``, default: the one ``SPILLWATCH_CONFIG`` names), else the defaults."""
    return _source_of(tuple(name.split(".")), path if path is not None else config_path())


def explain(exc: ValidationError, path: Path | None) -> str:
    """A pydantic error as one short line per problem: ``aggregator.confrim_k (config file x): ...``."""
    lines = []
    for e in exc.errors()[:5]:
        loc = tuple(e["loc"])
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, SettingError):
            loc += cause.loc
        name = ".".join(str(p) for p in loc) or "settings"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting (misspelt?)"
        lines.append(f"{name} ({_source_of(loc, path)}): {msg}")
    more = len(exc.errors()) - 5
    if more > 0:
        lines.append(f"(+{more} more)")
    return "; ".join(lines)


def _check_env_sections() -> None:
    """``SPILLWATCH_SECTION__KEY`` must name a known section: pydantic-settings would silently
    ignore ``SPILLWATCH_AGREGATOR__WINDOW``. (Variables without ``__`` may be tools' own, e.g.
    ``SPILLWATCH_REAL_MANIFEST``; an unknown key inside a known section is caught by the model.)"""
    sections = {n for n, f in Settings.model_fields.items() if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
    for var in sorted(os.environ):
        head, sep, _ = var.upper().partition("__")
        if not sep or not head.startswith("SPILLWATCH_"):
            continue
        section = head.removeprefix("SPILLWATCH_").lower()
        if section not in sections:
            raise ConfigError(f"{section} (environment {var}): unknown section (misspelt? known: {', '.join(sorted(sections))})")


def _takes_json(annotation: Any) -> bool:
    """pydantic-settings reads a list, tuple, mapping or section from the environment as JSON."""
    origin = get_origin(annotation)
    if origin in (list, tuple, dict, set):
        return True
    if origin is not None:  # Optional[...] / unions
        return any(_takes_json(a) for a in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _env_parse_error(exc: SettingsError) -> ConfigError:
    """pydantic-settings could not decode an environment value (lists and sections are JSON)."""
    m = re.search(r'field "([^"]+)"', str(exc))
    field = m.group(1) if m else "settings"
    prefix = f"SPILLWATCH_{field.upper()}"
    names = sorted(v for v in os.environ if v.upper() == prefix or v.upper().startswith(prefix + "__"))
    model = Settings.model_fields[field].annotation if field in Settings.model_fields else None
    suspects = []
    for var in names:
        key = var.upper().removeprefix(prefix).removeprefix("__").lower()
        sub = model.model_fields.get(key) if key and isinstance(model, type) and issubclass(model, BaseModel) else None
        annotation = sub.annotation if sub is not None else model
        try:
            json.loads(os.environ[var])
        except ValueError:
            if _takes_json(annotation):
                suspects.append((var, f"{field}.{key}" if key else field))
    if len(suspects) == 1:
        (var, field), shown = suspects[0], [suspects[0][0]]
    else:
        shown = [v for v, _ in suspects] or names
    src = f"environment {', '.join(shown)}" if shown else "environment"
    return ConfigError(f"{field} ({src}): cannot parse the value (lists and sections are JSON, e.g. '[\"console\"]')")


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment over the YAML file (``config``, else ``SPILLWATCH_CONFIG``).
    Raises ConfigError with a short message for anything invalid."""
    path = config_path(config)
    _check_env_sections()
    try:
        return Settings(config=path, **overrides)
    except ValidationError as exc:
        raise ConfigError(explain(exc, path)) from None
    except SettingsError as exc:
        raise _env_parse_error(exc) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_to_yaml(settings: Settings) -> str:
    """The whole effective configuration as YAML, secrets included (a child process reads it back
    as its only source: ``write_settings_file``)."""
    return yaml.safe_dump(_plain(settings.model_dump(mode="python", exclude={"config", "secrets_dir"})), sort_keys=False)


def write_settings_file(settings: Settings, path: Path) -> Path:
    """Write ``settings`` for a child process (mode 0600: it may hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(settings_to_yaml(settings))
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, SecretStr):
        return v.get_secret_value()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Enum):
        return v.value
    return v
