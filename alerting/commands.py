"""CLI: ``spillwatch alerting``, ``spillwatch ack``, ``spillwatch webhook-receiver``, ``spillwatch alerts tail``."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("alerting", help="Run the alerting service (pages responders) until SIGTERM/SIGINT.")(run_alerting)
    app.command("ack", help="Acknowledge an incident (stops its escalation).")(ack)
    app.command("webhook-receiver", help="A local HMAC-verifying webhook receiver (demo, tests).")(webhook_receiver)
    groups["alerts"].command("tail", help="Print spill alerts and camera outages as they arrive.")(tail)


def _stop_on_signals(stop: Any) -> None:
    def handler(signum: int, _frame: Any) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_alerting(
    dry_run: bool = typer.Option(None, "--dry-run/--no-dry-run", help="record pages without calling channels"),
    wait: float = typer.Option(60.0, "--wait", help="seconds to wait for the broker and Redis at start-up"),
) -> None:
    import threading

    from alerting.notifiers import ConfigError as ChannelConfigError
    from alerting.service import AlertingService
    from spillwatch.errors import unreachable_message
    from spillwatch.readiness import require
    from spillwatch.settings import ConfigError, get_settings, setting_source

    settings = get_settings()
    if dry_run is not None:
        settings = settings.model_copy(update={"alerting": settings.alerting.model_copy(update={"dry_run": dry_run})})
    try:
        service = AlertingService(settings)
    except ChannelConfigError as exc:  # a channel without its address: a configuration error like any other
        raise ConfigError(f"alerting.channels ({setting_source('alerting.channels')}): {exc}") from None
    require(settings, kafka=True, redis=True, wait_s=wait)
    stopping = threading.Event()
    _stop_on_signals(lambda: stopping.set())
    try:
        service.start()
    except Exception as exc:  # noqa: BLE001 - one line instead of a traceback (e.g. the ack port is taken)
        typer.echo(f"spillwatch: {unreachable_message(exc) or f'cannot start alerting: {type(exc).__name__}: {exc}'}", err=True)
        raise typer.Exit(1) from exc
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        service.stop()


def ack(
    incident: str = typer.Argument(..., help="incident id"),
    verdict: bool = typer.Option(None, "--true/--false", help="--true: a real spill; --false: a false alarm (optional)"),
    by: str = typer.Option(None, "--by", help="who acknowledges (default: $USER)"),
    note: str = typer.Option("", "--note"),
    force: bool = typer.Option(False, "--force", help="acknowledge even if the incident is not known yet"),
    old_label: str = typer.Option(None, "--label", hidden=True, help="deprecated: --true/--false"),
) -> None:
    import getpass

    from pydantic import ValidationError

    from alerting.acks import AckRequest, AckStore
    from alerting.service import make_redis
    from alerting.store import AlertStore
    from spillwatch.cli_options import renamed
    from spillwatch.settings import get_settings

    label = renamed(None if verdict is None else str(verdict).lower(), old_label, new="--true/--false", old="--label")
    try:
        req = AckRequest.model_validate({"by": by or getpass.getuser() or "unknown", "note": note, "label": label})
    except ValidationError as exc:
        typer.echo(f"invalid acknowledgement: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    s = get_settings()
    r = make_redis(s.redis.url)  # an unreachable Redis: one line naming the fix (spillwatch.cli.main)
    store = AlertStore(r, s.redis.key_prefix, idempotency_ttl_s=s.alerting.idempotency_ttl_s, lease_s=s.alerting.inflight_lease_s)
    if not force and not store.incident(incident):
        typer.echo(f"unknown incident {incident!r} (use --force to acknowledge anyway)", err=True)
        raise typer.Exit(1)
    acks = AckStore(r, s.redis.key_prefix, s.alerting.ack_ttl_s, on_ack=store.cancel_escalation)
    a = acks.ack(incident, req)
    typer.echo(f"acknowledged {incident} by {a.by} at {a.at.isoformat()}" + (f" label={a.label}" if a.label else ""))
    if a.label is not None:  # a verdict teaches the camera at once (docs/suppression.md)
        from spillwatch.suppression_store import SuppressionStore, outcome_line

        outcome = SuppressionStore(r, s.redis.key_prefix, s.suppression).apply_verdict(
            incident, a.label == "true", by=a.by, source="ack")
        typer.echo(outcome_line(outcome))


def webhook_receiver(
    port: int = typer.Option(8099, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
    out: Path = typer.Option(Path("var/webhook-pages.jsonl"), "--out", help="JSONL file of received pages"),
    fail_for: float = typer.Option(0.0, "--fail-for", help="answer 500 for the first S seconds"),
) -> None:
    """The HMAC secret is the webhook's own setting (``alerting.webhook_secret``: environment, config
    file or secrets directory), never a command-line argument (visible in ``ps``)."""
    import threading

    from alerting.receiver import WebhookReceiver
    from spillwatch.settings import get_settings

    cfg = get_settings().alerting
    secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret is not None else None
    if not secret and not cfg.webhook_allow_unsigned:
        typer.echo(
            "configuration error: the receiver needs alerting.webhook_secret to verify pages "
            "(or alerting.webhook_allow_unsigned=true to accept unsigned ones)",
            err=True,
        )
        raise typer.Exit(2)
    recv = WebhookReceiver(host, port, secret=secret, out=out, fail_for_s=fail_for, allow_unsigned=not secret).start()
    typer.echo(f"webhook receiver on {recv.url} (signature {'required' if secret else 'not checked'}), pages -> {out}")
    stopping = threading.Event()
    _stop_on_signals(lambda: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        recv.stop()
        typer.echo(f"received {len(recv.pages)} page(s), {len(recv.duplicates)} duplicate(s), rejected {len(recv.rejected)}")


def tail(
    as_json: bool = typer.Option(False, "--json", help="print each alert as one JSON line"),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="start at the oldest retained alert"),
    limit: int = typer.Option(0, "--limit", help="exit after N alerts (0 = run until Ctrl-C)"),
    timeout: float = typer.Option(0.0, "--timeout", help="exit after S seconds (0 = no limit)"),
    wait: float = typer.Option(30.0, "--wait", help="seconds to wait for the broker at start-up"),
) -> None:
    from alerting.formatting import one_line
    from alerting.kinds import parse_alert
    from spillwatch.events import EventError
    from spillwatch.readiness import require
    from spillwatch.settings import get_settings
    from spillwatch.topic_reader import TopicNotFound, TopicReader

    s = get_settings()
    topic = s.topics.spill_alerts
    topics = [topic, s.topics.camera_alerts]
    require(s, kafka=True, wait_s=wait)
    stopping = {"v": False}
    _stop_on_signals(lambda: stopping.__setitem__("v", True))
    try:
        # No group: a tail never moves the alerting service's offsets and sees every partition.
        reader = TopicReader(s, topics, wait_topics_s=5, keep=False, from_beginning=from_beginning,
                             client_id="spillwatch-alerts-tail")
    except TopicNotFound as exc:
        typer.echo(f"topic {topic} or {topics[1]} does not exist (run `spillwatch init-topics`)", err=True)
        raise typer.Exit(1) from exc
    try:
        if not as_json:
            typer.echo(f"# tailing {' and '.join(topics)} ({'from the beginning' if from_beginning else 'new alerts'}); Ctrl-C to stop",
                       err=True)
        seen = 0
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while not stopping["v"] and (deadline is None or time.monotonic() < deadline):
            for rec in reader.poll(timeout_ms=300):
                try:
                    alert = parse_alert(rec.value or b"", "camera" if rec.topic == topics[1] else "spill")
                except EventError as exc:
                    print(f"# skipped malformed record at {rec.topic}[{rec.partition}]@{rec.offset}: {exc}", file=sys.stderr)
                    continue
                line = json.dumps(alert.model_dump(mode="json"), separators=(",", ":")) if as_json else one_line(alert)
                print(line, flush=True)
                seen += 1
                if limit and seen >= limit:
                    return
    finally:
        reader.close()
