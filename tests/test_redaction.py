"""Secrets never leave a process as text: camera URLs with credentials (passwords holding "/" or
"@", passwords in the query string) are redacted in logs, camera-health events, error strings,
stats and metrics; secrets reach services by environment or file, never argv."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from spillwatch.redact import MASK, redact_text, redact_url, redact_value
from spillwatch.settings import REPO_ROOT, CameraConfig, Settings

# fragments of the secrets below: none may appear anywhere
FRAGMENTS = ("Sup3r", "S3cret", "Pa55", "Qu3ry", "T0kenValue", "viewer0nly")
HOSTILE_URL = "rtsp://viewer0nly:Sup3r@S3cret/Pa55@127.0.0.1:{port}/stream1?password=Qu3ry@Secret&token=T0kenValue&ch=1"


def _clean(text: str) -> bool:
    return not any(f in text for f in FRAGMENTS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("rtsp://admin:p@ss@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("rtsp://admin:pa/ss@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("rtsp://admin:p@ss/w0rd@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("rtsp://admin:pa?ss@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("rtsp://admin:pa#ss@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("rtsp://user@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("RTSP://Admin:X@cam/s", "RTSP://***@cam/s"),
        ("redis://:pw@redis:6379/0", "redis://***@redis:6379/0"),
        ("http://cam/cgi?user=admin&password=p@ss/w&ch=1", "http://cam/cgi?user=***&password=***&ch=1"),
        ("http://cam/snap.jpg?api_key=abc;sig=zz#token=t", "http://cam/snap.jpg?api_key=***;sig=***#token=***"),
        ("http://cam/x?Camera_Password=abc", "http://cam/x?Camera_Password=***"),
        ("http://cam/snap@2x.jpg", "http://cam/snap@2x.jpg"),  # an "@" in a path is not userinfo
        ("rtsp://10.0.0.5:554/s1", "rtsp://10.0.0.5:554/s1"),
        ("/clips/a.mp4", "/clips/a.mp4"),
        ("folder:/data/frames", "folder:/data/frames"),
        ("device:0", "device:0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        HOSTILE_URL.format(port=554),
        "rtsp://viewer0nly:Sup3r;token=S3cret@host/s",  # a "?x=" inside the password
        "rtsp://host:554/s?password=Sup3r@S3cret/Pa55",  # an "@" inside a query password
        "http://h/x?token=T0kenValue#sig=S3cret",
    ],
)
def test_ambiguous_urls_never_leak(url: str) -> None:
    assert _clean(redact_url(url)), redact_url(url)
    assert _clean(redact_text(f"cannot open stream '{url}': Connection refused")), redact_text(url)


def test_free_text_and_structures() -> None:
    url = HOSTILE_URL.format(port=554)
    exc = RuntimeError(f"cannot open stream {url}")
    assert _clean(redact_text(repr(exc)))
    assert redact_text("plain words, key=value, a@b") == "plain words, key=value, a@b"
    event = {"event": "x", "source": url, "nested": [{"uri": url}], "password": "hunter2", "smtp_password": "x",
             "webhook_secret": "s", "authorization": "Bearer t", "idempotency_key": "inc-1:confirmed", "count": 3}
    out = redact_value(event)
    assert _clean(json.dumps(out))
    assert out["password"] == out["smtp_password"] == out["webhook_secret"] == out["authorization"] == MASK
    assert out["idempotency_key"] == "inc-1:confirmed" and out["count"] == 3


def test_every_log_line_is_redacted_structlog_tracebacks_and_stdlib(tmp_path: Path) -> None:
    """In a real process: structlog events (fields, message, traceback) and standard-library
    loggers (kafka-python, httpx, ...) all pass the redaction."""
    url = HOSTILE_URL.format(port=554)
    code = f"""
import logging
from spillwatch.logs import configure_logging, get_logger
url = {url!r}
for fmt in ("json", "console"):
    configure_logging("INFO", fmt)
    log = get_logger("t", source=url)
    log.info("opening " + url, uri=url, error=f"cannot open {{url}}")
    try:
        raise RuntimeError("cannot open stream " + url)
    except RuntimeError:
        log.exception("camera failed")
    logging.getLogger("kafka.conn").warning("connecting to %s", url)
    try:
        raise ValueError(url)
    except ValueError:
        logging.getLogger("httpx").exception("request to %s failed", url)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "opening rtsp://***@127.0.0.1:554/stream1" in out and "Traceback" in out and "kafka.conn" in out
    assert _clean(out), [ln for ln in out.splitlines() if not _clean(ln)]


# ---------------------------------------------------------------- producer: logs, events, stats, metrics


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_producer_with_a_hostile_camera_url_leaks_nothing(stack_settings: Settings, tmp_path: Path) -> None:
    """A stream camera whose password holds "/" and "@" and whose query holds a password and a
    token, unreachable: the producer's log (including FFmpeg's own stderr), its camera-health
    events, its stats and its /metrics never show a fragment of them."""
    from devstack.stack import free_port
    from spillwatch.events import CameraHealth, CameraState
    from spillwatch.supervisor import ServiceGroup
    from tests.helpers import consume_all, wait_until

    url = HOSTILE_URL.format(port=free_port())
    metrics_port = free_port()
    s = stack_settings.model_copy(update={
        "cameras": [CameraConfig(id="dock-secret", source=url, fps=2)],
        "producer": stack_settings.producer.model_copy(update={
            "stall_after_s": 0.5, "offline_after_s": 1.0, "heartbeat_s": 0.5,
            "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5, "metrics_port": metrics_port,
        }),
    })
    stats = tmp_path / "stats.json"
    with ServiceGroup(s, tmp_path / "logs", cwd=REPO_ROOT) as group:
        proc = group.start(["produce", "--out", str(stats)])

        def offline_with_error() -> list[CameraHealth]:
            events = [CameraHealth.from_bytes(r.value) for r in consume_all(s, s.topics.camera_health, 2, 0)]
            return [e for e in events if e.state == CameraState.OFFLINE and e.error] and events

        events = wait_until(offline_with_error, 60, 0.5)
        wait_until(lambda: "reconnecting" in proc.log_text(), 30)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            metrics_text = resp.read().decode()
        assert proc.stop(20) == 0
        log = proc.log_text()
    assert "dock-secret" in metrics_text and _clean(metrics_text)
    errors = [e.error or "" for e in events]
    assert any("cannot open stream rtsp://***@127.0.0.1" in e for e in errors), errors
    assert all(_clean(e.model_dump_json()) for e in events)
    assert "source failed, reconnecting" in log and "rtsp://***@127.0.0.1" in log
    assert _clean(log), [ln for ln in log.splitlines() if not _clean(ln)][:5]
    assert _clean(stats.read_text())


# ---------------------------------------------------------------- secrets by environment or file, never argv


def _proc_text(pid: int, what: str) -> str:
    return Path(f"/proc/{pid}/{what}").read_bytes().replace(b"\0", b" ").decode(errors="replace")


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_services_receive_the_webhook_secret_by_file_never_argv_or_environment(stack_settings: Settings, tmp_path: Path) -> None:
    """The demo's way of starting the receiver and alerting: the secret is in neither process's
    command line (visible in ps) nor environment; the receiver still verifies real pages."""
    from devstack.stack import free_port
    from spillwatch.supervisor import ServiceGroup
    from tests.helpers import wait_until
    from tests.helpers.alerts import make_alert, publish

    secret = "Sup3rS3cretHookKey"
    hook_port = free_port()
    out = tmp_path / "hook.jsonl"
    s = stack_settings.model_copy(update={"alerting": stack_settings.alerting.model_copy(update={
        "channels": ["webhook"], "webhook_url": f"http://127.0.0.1:{hook_port}/hook", "webhook_secret": secret,
        "backoff_initial_s": 0.2, "backoff_max_s": 1.0,
    })})
    with ServiceGroup(s, tmp_path / "logs", cwd=REPO_ROOT) as group:
        recv = group.start(["webhook-receiver", "--port", str(hook_port), "--out", str(out)], name="webhook-receiver")
        alerting = group.start("alerting")
        group.wait_groups({s.kafka.topic_prefix + s.alerting.group_id: 1})
        publish(s, make_alert(incident="inc-argv").to_bytes())
        wait_until(lambda: out.exists() and "inc-argv:confirmed" in out.read_text(), 30)
        for child in (recv, alerting):
            assert child.pid is not None
            assert secret not in _proc_text(child.pid, "cmdline")
            assert secret not in _proc_text(child.pid, "environ")
            assert _proc_text(child.pid, "cmdline").count("Sup3r") == 0
        cfg = Path(alerting.env["SPILLWATCH_CONFIG"])
        assert cfg.stat().st_mode & 0o077 == 0  # the private settings file: owner only
    assert json.loads(out.read_text().splitlines()[0])["verified"] is True


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    with monkeypatch.context() as m:
        for k in list(os.environ):
            if k.startswith("SPILLWATCH_"):
                m.delenv(k)
        for k, v in env.items():
            m.setenv(k, v)
        from spillwatch.settings import load_settings

        return load_settings()


def test_secrets_dir_gives_each_service_its_own_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker secrets as pydantic-settings secrets_dir files: the producer's folder holds the camera
    URLs with credentials, alerting's the channel secrets; neither sees the other's."""
    config = tmp_path / "config.yml"
    config.write_text("cameras:\n  - id: dock-1\n    source: rtsp://192.0.2.10/stream2\n  - id: dock-2\n    source: /clips/a.mp4\n")
    producer_dir = tmp_path / "producer"
    producer_dir.mkdir()
    (producer_dir / "spillwatch_producer__camera_sources").write_text(json.dumps({"dock-1": HOSTILE_URL.format(port=554)}))
    alerting_dir = tmp_path / "alerting"
    alerting_dir.mkdir()
    (alerting_dir / "spillwatch_alerting__webhook_secret").write_text("hook-key\n")
    (alerting_dir / "spillwatch_alerting__smtp_password").write_text("")  # empty: not set
    (alerting_dir / ".hidden").write_text("ignored")

    prod = _settings_from({"SPILLWATCH_CONFIG": str(config), "SPILLWATCH_SECRETS_DIR": str(producer_dir)}, monkeypatch)
    assert prod.cameras[0].source == HOSTILE_URL.format(port=554) and prod.cameras[1].source == "/clips/a.mp4"
    assert prod.alerting.webhook_secret is None
    assert _clean(repr(prod)) and _clean(str(prod.producer))  # SecretStr: never printed

    alert = _settings_from({"SPILLWATCH_CONFIG": str(config), "SPILLWATCH_SECRETS_DIR": str(alerting_dir)}, monkeypatch)
    assert alert.alerting.webhook_secret is not None and alert.alerting.webhook_secret.get_secret_value() == "hook-key"
    assert alert.alerting.smtp_password is None
    assert alert.cameras[0].source == "rtsp://192.0.2.10/stream2"  # no credentials here

    # the environment still wins over a file; a typo'd file name or a missing folder is an error
    env = _settings_from({"SPILLWATCH_SECRETS_DIR": str(alerting_dir), "SPILLWATCH_ALERTING__WEBHOOK_SECRET": "from-env"},
                         monkeypatch)
    assert env.alerting.webhook_secret.get_secret_value() == "from-env"  # type: ignore[union-attr]
    from spillwatch.settings import ConfigError

    (alerting_dir / "spillwatch_alerting__webhok_secret").write_text("x")
    with pytest.raises(ConfigError, match="webhok_secret"):
        _settings_from({"SPILLWATCH_SECRETS_DIR": str(alerting_dir)}, monkeypatch)
    with pytest.raises(ConfigError, match="no such folder"):
        _settings_from({"SPILLWATCH_SECRETS_DIR": str(tmp_path / "nope")}, monkeypatch)
    with pytest.raises(ConfigError, match="not configured"):
        _settings_from({"SPILLWATCH_SECRETS_DIR": str(producer_dir)}, monkeypatch)  # no cameras in the config


def test_compose_gives_each_service_only_the_secrets_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers.deploy import DEPLOY, composefile

    svcs = composefile.services(composefile.load())
    granted = {n: {sec.target for sec in svc.secrets} for n, svc in svcs.items() if svc.secrets}
    assert granted == {
        "producer": {"spillwatch_producer__camera_sources"},
        "alerting": {"spillwatch_alerting__webhook_secret", "spillwatch_alerting__slack_webhook_url",
                     "spillwatch_alerting__pagerduty_routing_key", "spillwatch_alerting__smtp_password"},
    }
    for name in granted:
        assert svcs[name].environment["SPILLWATCH_SECRETS_DIR"] == composefile.SECRETS_DIR
        for sec in svcs[name].secrets:
            assert sec.source.is_file() and sec.source.parent == DEPLOY / "secrets.example", sec
    # the placeholders configure nothing, and load as the services would read them
    for name, want_none in (("producer", "webhook_secret"), ("alerting", "webhook_secret")):
        svc = svcs[name]
        env = {k: v for k, v in svc.environment.items() if k.startswith("SPILLWATCH_")}
        env["SPILLWATCH_CONFIG"] = str(svc.host_path(env["SPILLWATCH_CONFIG"]))
        env["SPILLWATCH_SECRETS_DIR"] = str(svc.materialize_secrets(tmp_path / name))
        s = _settings_from(env, monkeypatch)
        assert getattr(s.alerting, want_none) is None and s.producer.camera_sources == {}
    # no secret in the shared env file: every service reads all of it
    shared = composefile.read_env_file(DEPLOY / ".env.example")
    assert not [k for k in shared if any(w in k for w in ("SECRET", "PASSWORD", "ROUTING_KEY", "SLACK_WEBHOOK", "CAMERA_SOURCES"))]


def test_no_command_takes_a_secret_on_its_command_line() -> None:
    import click
    import typer

    import spillwatch.cli

    root = typer.main.get_command(spillwatch.cli.app)

    def walk(cmd: click.Command, path: str) -> list[str]:
        found = [f"{path} {o}" for p in cmd.params for o in getattr(p, "opts", [])
                 if any(w in o.lower() for w in ("secret", "password", "token", "routing-key"))]
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                sub = cmd.get_command(click.Context(cmd), name)
                if sub is not None:
                    found += walk(sub, f"{path} {name}")
        return found

    assert walk(root, "spillwatch") == []
