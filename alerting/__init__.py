"""Alerting: pages responders about confirmed spills (consumer group on ``spill-alerts``).

Layout: ``notifiers/`` (one module per channel, pure payload builders + a thin HTTP/SMTP edge),
``delivery`` (pure retry/backoff policy, max age), ``routing`` (pure: which pages an alert makes,
fallback), ``transitions`` (pure: whether an alert's transition makes sense for its incident),
``store`` (Redis: durable page queue, idempotency keys, escalation schedule), ``acks``
(acknowledgements in Redis), ``service`` (the Kafka consumer + dispatcher), ``api`` (ack HTTP
endpoint), ``receiver`` (a local HMAC-verifying webhook receiver for demos and tests).
"""
