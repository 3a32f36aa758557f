"""Paging under faults: the real alerting service against the local webhook receiver while the
receiver is down, on the embedded stack.

``run_webhook_outage(down_s, speed, work_dir)``: the webhook receiver is down for ``down_s``
scenario seconds while ``CONFIRMED_ALERTS`` confirmed alerts (distinct incidents) are published,
spread over the outage; then it comes back. The alerting service runs as a child process
(``spillwatch alerting``, settings handed over as its private config file) with the production
retry shape scaled by ``speed``: backoff ``0.5 s .. 30 s / speed``, ``max_age_s = 1 h / speed``,
and the outage lasts ``down_s / speed`` real seconds. The receiver de-duplicates on the signed
idempotency key and keeps its pages in a JSONL file across its restart.

Returned row (times in scenario seconds, i.e. real seconds x ``speed``)::

    {"scenario": "webhook down 90 s", "confirmed": 12, "pages_delivered": 12, "lost": 0,
     "duplicate": 0, "stalled_s": 21.4}

- ``pages_delivered``: distinct pages the receiver accepted (one per incident is the goal);
- ``lost``: confirmed incidents without a page (e.g. dead-lettered after a short retry budget);
- ``duplicate``: deliveries of a page the receiver had already accepted (its de-duplication kept
  them from a responder; the sender must not cause any);
- ``stalled_s``: from the receiver coming back to the last late page arriving.

The run ends on a positive signal: every page delivered, and the service's page queue in Redis is
empty (nothing more can be sent), or the time limit (``max_age_s`` + margin) runs out.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from spillwatch.events import AlertState, Evidence, SpillAlert
from spillwatch.settings import Settings, load_settings

CONFIRMED_ALERTS = 12
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_AGE_S = 3600.0


def scenario_name(down_s: float, speed: float) -> str:
    what = f"{down_s / 60:g} min" if down_s >= 120 else f"{down_s:g} s"
    return f"webhook down {what}" + (f" (x{speed:g})" if speed != 1 else "")


def outage_settings(base: Settings, *, bootstrap: str, redis_url: str, hook_port: int, speed: float, ns: str) -> Settings:
    """The alerting service's settings for the run: webhook only, the retry shape scaled by ``speed``."""
    return base.model_copy(update={
        "log_format": "json",
        "kafka": base.kafka.model_copy(update={
            "bootstrap": bootstrap, "profile": "local", "partitions": 1, "topic_prefix": f"faults.{ns}.",
        }),
        "redis": base.redis.model_copy(update={"url": redis_url, "key_prefix": f"faults:{ns}"}),
        "cameras": [],
        "alerting": base.alerting.model_copy(update={
            "channels": ["webhook"],
            "escalation_channels": [],
            "fallback_channels": [],
            "webhook_url": f"http://127.0.0.1:{hook_port}/hook",
            "webhook_secret": SecretStr(secrets.token_hex(16)),
            "webhook_allow_unsigned": False,
            "backoff_initial_s": BACKOFF_INITIAL_S / speed,
            "backoff_max_s": BACKOFF_MAX_S / speed,
            "max_age_s": MAX_AGE_S / speed,
            "max_tries": None,
            "request_timeout_s": 2.0,
            "metrics_port": None,
            "dry_run": False,
        }),
    })


def confirmed_alert(i: int, now: datetime) -> SpillAlert:
    return SpillAlert(
        incident_id=f"fault-cam-{i}-{uuid.uuid4().hex[:8]}",
        camera_id=f"fault-cam-{i % 4}",
        state=AlertState.CONFIRMED,
        first_seen=now - timedelta(seconds=3),
        confirmed_at=now,
        evidence=Evidence(scores=[0.8, 0.9, 0.95], frame_seqs=[1, 2, 3], peak_prob=0.95, confirming_seq=3),
        model_version="fault-test",
    )


def run_webhook_outage(
    down_s: float, speed: float, work_dir: Path, *, stack: Any = None, alerts: int = CONFIRMED_ALERTS
) -> dict[str, Any]:
    """Run the outage scenario and return its row (see the module docstring). ``stack``: a running
    ``LocalStack`` to use (tests); by default one is started for the run under ``work_dir``."""
    from devstack.stack import LocalStack

    if down_s <= 0 or speed <= 0:
        raise ValueError("down_s and speed must be > 0")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if stack is not None:
        return _run(down_s, speed, work_dir, stack, alerts)
    with LocalStack(work_dir=work_dir / "stack") as own:
        return _run(down_s, speed, work_dir, own, alerts)


def _run(down_s: float, speed: float, work_dir: Path, stack: Any, n_alerts: int) -> dict[str, Any]:
    import redis

    from alerting.receiver import WebhookReceiver
    from devstack.stack import free_port
    from spillwatch.kafka import create_topics, make_producer
    from spillwatch.redis_keys import RedisKeys
    from spillwatch.supervisor import ServiceGroup

    ns = uuid.uuid4().hex[:8]
    hook_port = free_port()
    settings = outage_settings(load_settings(), bootstrap=stack.bootstrap, redis_url=stack.redis_url,
                               hook_port=hook_port, speed=speed, ns=ns)
    secret = settings.alerting.webhook_secret.get_secret_value()  # type: ignore[union-attr]
    create_topics(settings, partitions=1)
    pages_file = work_dir / f"webhook-pages-{ns}.jsonl"
    keys = RedisKeys(settings.redis.key_prefix)
    r = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    outage_real_s = down_s / speed
    receiver: WebhookReceiver | None = None
    duplicates = 0
    try:
        with ServiceGroup(settings, work_dir / f"logs-{ns}") as group:
            group.start("alerting")
            group.wait_groups({settings.kafka.topic_prefix + settings.alerting.group_id: 1}, timeout_s=90)
            # the receiver is down (nothing listens on its port) while the incidents are confirmed
            producer = make_producer(settings)
            t_down = time.monotonic()
            try:
                for i in range(n_alerts):
                    due = t_down + outage_real_s * i / max(1, n_alerts)
                    time.sleep(max(0.0, due - time.monotonic()))
                    alert = confirmed_alert(i, datetime.now(UTC))
                    producer.send(settings.topics.spill_alerts, key=alert.camera_id.encode(), value=alert.to_bytes())
                producer.flush(15)
            finally:
                producer.close(5)
            time.sleep(max(0.0, t_down + outage_real_s - time.monotonic()))
            group.check_alive()
            receiver = WebhookReceiver(port=hook_port, secret=secret, out=pages_file).start()
            t_up = time.monotonic()
            deadline = t_up + settings.alerting.max_age_s + 30.0
            last_page = t_up

            def settled() -> bool:
                return len(receiver.pages) >= n_alerts and r.zcard(keys.alerting_queue) == 0 and r.hlen(keys.alerting_jobs) == 0

            seen = 0
            while time.monotonic() < deadline:
                if len(receiver.pages) > seen:
                    seen = len(receiver.pages)
                    last_page = time.monotonic()
                if settled():
                    break
                group.check_alive()
                time.sleep(0.1)
            duplicates = len(receiver.duplicates)
    finally:
        if receiver is not None:
            receiver.stop()
        r.close()
    delivered = {p.get("idempotency_key") for p in receiver.pages} if receiver is not None else set()
    return {
        "scenario": scenario_name(down_s, speed),
        "confirmed": n_alerts,
        "pages_delivered": len(delivered),
        "lost": n_alerts - len(delivered),
        "duplicate": duplicates,
        "stalled_s": round((last_page - t_up) * speed, 1) if delivered else None,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.paging_faults [DOWN_S SPEED]...``: print one JSON row per scenario
    (default: "webhook down 90 s" in real time, then "10 min" at x10)."""
    import json
    import sys
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    pairs = [(float(args[i]), float(args[i + 1])) for i in range(0, len(args) - 1, 2)] or [(90.0, 1.0), (600.0, 10.0)]
    with tempfile.TemporaryDirectory(prefix="spillwatch-paging-faults-") as tmp:
        for down, speed in pairs:
            print(json.dumps(run_webhook_outage(down, speed, Path(tmp) / f"{down:g}-{speed:g}")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
