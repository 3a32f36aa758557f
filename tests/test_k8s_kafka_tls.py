"""Kafka TLS/SASL settings reach every client: kafka-python producers, consumers and admin, Faust's
broker credentials, and the broker-ready probe that runs before topics are created (the settings
the Kubernetes overlays set for managed Kafka and Strimzi)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import certifi
import pytest

from spillwatch.kafka import (
    broker_ready,
    common_config,
    consumer_config,
    faust_broker_settings,
    producer_config,
    security_config,
)
from spillwatch.settings import Settings

CA = certifi.where()  # any PEM bundle will do


def _settings(**kafka: Any) -> Settings:
    base = {"bootstrap": "kafka-1:9093,kafka-2:9093", "profile": "apache"}
    return Settings(kafka={**base, **kafka})


def test_sasl_ssl_with_a_private_ca_reaches_every_kafka_python_client() -> None:
    s = _settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="spillwatch",
                  sasl_password="pw", ssl_cafile=CA)
    for cfg in (common_config(s), producer_config(s), consumer_config(s, "g")):
        assert cfg["security_protocol"] == "SASL_SSL"
        assert cfg["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == ("spillwatch", "pw")
        assert cfg["ssl_cafile"] == CA
        assert cfg["bootstrap_servers"] == ["kafka-1:9093", "kafka-2:9093"]


def test_plaintext_sets_no_tls_or_sasl() -> None:
    cfg = common_config(_settings())
    assert cfg["security_protocol"] == "PLAINTEXT"
    assert not {k for k in cfg if k.startswith(("sasl_", "ssl_"))}


def test_faust_gets_scram_credentials_with_the_private_ca() -> None:
    s = _settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="spillwatch",
                  sasl_password="pw", ssl_cafile=CA)
    creds = faust_broker_settings(s)["broker_credentials"]
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.username == "spillwatch" and creds.password == "pw"
    loaded = creds.ssl_context.get_ca_certs()
    assert loaded and len(loaded) == Path(CA).read_text().count("BEGIN CERTIFICATE")  # exactly the given bundle


def test_faust_ssl_without_sasl_uses_the_ca() -> None:
    ctx = faust_broker_settings(_settings(security_protocol="SSL", ssl_cafile=CA))["broker_credentials"]
    assert ctx.get_ca_certs()


@pytest.mark.integration
def test_broker_ready_takes_the_security_settings(local_stack: Any) -> None:
    """The probe before topic creation gets the same security settings as the clients (before, it
    always spoke plaintext, so it never saw a TLS-only broker as ready). A TLS probe of a plaintext
    broker is not tested: kafka-python 3.0.12 waits forever when the TLS handshake fails during
    bootstrap."""
    s = Settings(kafka={"bootstrap": local_stack.bootstrap, "profile": "local"})
    assert broker_ready(local_stack.bootstrap, timeout_s=3.0, security=security_config(s))
    assert security_config(s) == {"security_protocol": "PLAINTEXT"}
