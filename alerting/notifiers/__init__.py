"""Notifier channels (one module each) and the factory that builds them from settings.

Channel names used in ``alerting.channels`` / ``escalation_channels`` / ``fallback_channels`` /
``camera_channels``:
``console``, ``webhook``, ``slack``, ``pagerduty``, ``email``.
"""

from __future__ import annotations

from alerting.notifiers.base import ConfigError, DeliveryResult, Notifier, Page
from spillwatch.logs import get_logger
from spillwatch.settings import AlertingSettings

log = get_logger("alerting.notifiers")

CHANNELS = ("console", "webhook", "slack", "pagerduty", "email")

__all__ = ["CHANNELS", "ConfigError", "DeliveryResult", "Notifier", "Page", "build_notifier", "build_notifiers"]


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def build_notifier(name: str, cfg: AlertingSettings) -> Notifier:
    """A channel from settings; raises ConfigError when its settings are missing."""
    timeout = cfg.request_timeout_s
    public = cfg.public_base_url
    if name == "console":
        from alerting.notifiers.console import ConsoleNotifier

        return ConsoleNotifier()
    if name == "webhook":
        from alerting.notifiers.webhook import WebhookNotifier

        if not cfg.webhook_url:
            raise ConfigError("channel 'webhook' needs alerting.webhook_url")
        secret = _secret(cfg.webhook_secret)
        if not secret:
            if not cfg.webhook_allow_unsigned:
                raise ConfigError(
                    "channel 'webhook' needs alerting.webhook_secret (receivers verify the signature); "
                    "set alerting.webhook_allow_unsigned=true to send unsigned pages on purpose"
                )
            log.warning(
                "WEBHOOK PAGES ARE UNSIGNED: alerting.webhook_allow_unsigned is set and there is no webhook_secret; "
                "anyone who can reach the receiver can forge or replay pages",
                url=cfg.webhook_url,
            )
        return WebhookNotifier(
            cfg.webhook_url, secret.encode() if secret else None, timeout_s=timeout, public_base_url=public
        )
    if name == "slack":
        from alerting.notifiers.slack import SlackNotifier

        slack_url = _secret(cfg.slack_webhook_url)
        if not slack_url:
            raise ConfigError("channel 'slack' needs alerting.slack_webhook_url")
        return SlackNotifier(slack_url, timeout_s=timeout, public_base_url=public)
    if name == "pagerduty":
        from alerting.notifiers.pagerduty import DEFAULT_EVENTS_URL, PagerDutyNotifier

        key = _secret(cfg.pagerduty_routing_key)
        if not key:
            raise ConfigError("channel 'pagerduty' needs alerting.pagerduty_routing_key")
        return PagerDutyNotifier(
            key, url=cfg.pagerduty_url or DEFAULT_EVENTS_URL, timeout_s=timeout, public_base_url=public
        )
    if name == "email":
        from alerting.notifiers.email import EmailNotifier

        if not (cfg.smtp_host and cfg.smtp_from and cfg.smtp_to):
            raise ConfigError("channel 'email' needs alerting.smtp_host, smtp_from and smtp_to")
        return EmailNotifier(
            cfg.smtp_host,
            cfg.smtp_port,
            cfg.smtp_from,
            list(cfg.smtp_to),
            starttls=cfg.smtp_starttls,
            username=cfg.smtp_username,
            password=_secret(cfg.smtp_password),
            timeout_s=max(timeout, 10.0),
            public_base_url=public,
        )
    raise ConfigError(f"unknown channel {name!r} (known: {', '.join(CHANNELS)})")


def build_notifiers(cfg: AlertingSettings) -> dict[str, Notifier]:
    """Every channel named in channels, escalation_channels, fallback_channels or camera_channels,
    built once."""
    names = list(dict.fromkeys([*cfg.channels, *cfg.escalation_channels, *cfg.fallback_channels, *(cfg.camera_channels or [])]))
    return {n: build_notifier(n, cfg) for n in names}
