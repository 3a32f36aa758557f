"""Webhook signing: the signature covers timestamp, idempotency key and body; timestamps must be
fresh integers; an unsigned webhook is a config error unless allowed (loudly); the receiver
de-duplicates on the signed key; the verification snippet of alerting/README.md works."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from alerting.notifiers import ConfigError, build_notifier
from alerting.notifiers.base import Page
from alerting.notifiers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    build_headers,
    build_payload,
    encode,
    sign,
    verify,
)
from alerting.receiver import WebhookReceiver
from spillwatch.settings import REPO_ROOT, AlertingSettings, Settings
from tests.helpers import run_cli
from tests.helpers.alerts import make_alert

SECRET = b"s3cret-key"
README = REPO_ROOT / "alerting" / "README.md"


def _signed(incident: str = "inc-42", ts: str | None = None) -> tuple[dict[str, str], bytes]:
    page = Page(make_alert(incident=incident), "webhook")
    body = encode(build_payload(page))
    return build_headers(page, body, SECRET, ts or str(int(time.time()))), body


def _mac(ts: str, key: str, body: bytes) -> str:
    """A correct MAC over whatever timestamp string an attacker (or a buggy signer) chose."""
    return "sha256=" + hmac.new(SECRET, ts.encode() + b"\n" + key.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def _check(headers: dict[str, str], body: bytes, **kw: Any) -> bool:
    return verify(SECRET, headers.get(TIMESTAMP_HEADER), headers.get(IDEMPOTENCY_HEADER), body,
                  headers.get(SIGNATURE_HEADER), **kw)


# ---------------------------------------------------------------- the scheme


def test_signature_covers_timestamp_key_and_body() -> None:
    headers, body = _signed()
    assert _check(headers, body)
    assert headers[SIGNATURE_HEADER] == _mac(headers[TIMESTAMP_HEADER], "inc-42:confirmed", body)
    # another idempotency key under the same signature: a replay past the receiver's de-dup
    assert not _check(headers | {IDEMPOTENCY_HEADER: "inc-42:confirmed-again"}, body)
    assert not _check(headers | {IDEMPOTENCY_HEADER: ""}, body)
    assert not _check({k: v for k, v in headers.items() if k != IDEMPOTENCY_HEADER}, body)
    assert not _check(headers, body + b" ")
    assert not _check(headers | {TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)}, body)
    assert not verify(b"other", headers[TIMESTAMP_HEADER], headers[IDEMPOTENCY_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify(b"", headers[TIMESTAMP_HEADER], headers[IDEMPOTENCY_HEADER], body, headers[SIGNATURE_HEADER])
    # boundaries are unambiguous: a key cannot carry a line break into the signed text
    assert not verify(SECRET, "1", "a\nb", b"c", _mac("1", "a\nb", b"c"), now=1)


@pytest.mark.parametrize("ts", ["nan", "NaN", "inf", "-inf", "Infinity", "1e9", "-5", " 1700000000", "1700000000\n",
                                "1700000000.5", "0x6553f100", "１７００００００００", "", "9" * 13])
def test_non_integer_timestamps_are_rejected_even_with_a_correct_mac(ts: str) -> None:
    _, body = _signed()
    key = "inc-42:confirmed"
    # a signature made over this timestamp (e.g. a buggy or hostile signer) never becomes valid
    assert not verify(SECRET, ts, key, body, _mac(ts, key, body), now=1_700_000_000)
    assert not verify(SECRET, ts, key, body, _mac(ts, key, body), now=float("nan"))


@pytest.mark.parametrize(("skew", "ok"), [(0, True), (299, True), (-299, True), (301, False), (-301, False), (10**9, False)])
def test_timestamps_must_be_fresh_on_either_side(skew: int, ok: bool) -> None:
    now = 1_800_000_000
    ts = str(now - skew) if now - skew >= 0 else "0"
    _, body = _signed()
    key = "inc-42:confirmed"
    assert verify(SECRET, ts, key, body, _mac(ts, key, body), now=now, tolerance_s=300) is ok
    assert not verify(SECRET, ts, key, body, _mac(ts, key, body), now=now, tolerance_s=float("inf"))


def test_sign_refuses_what_verify_would_reject() -> None:
    with pytest.raises(ValueError):
        sign(SECRET, "nan", "k", b"x")
    with pytest.raises(ValueError):
        sign(SECRET, "1", "a b", b"x")
    with pytest.raises(ValueError):
        sign(b"", "1", "k", b"x")


# ---------------------------------------------------------------- unsigned is a config error


def test_webhook_without_a_secret_is_a_config_error_unless_allowed_loudly() -> None:
    url = "http://127.0.0.1:1/hook"
    for secret in (None, "", "   "):
        with pytest.raises(ConfigError, match="webhook_secret"):
            build_notifier("webhook", AlertingSettings(webhook_url=url, webhook_secret=secret))
    with capture_logs() as logs:
        n = build_notifier("webhook", AlertingSettings(webhook_url=url, webhook_allow_unsigned=True))
    n.close()
    loud = [e for e in logs if e["log_level"] == "warning" and "UNSIGNED" in e["event"]]
    assert len(loud) == 1
    page = Page(make_alert(), "webhook")
    assert SIGNATURE_HEADER not in build_headers(page, b"{}", None, "1")  # allowed: really unsigned


def test_alerting_and_receiver_commands_refuse_to_run_unsigned(tmp_path: Path) -> None:
    s = Settings(alerting={"channels": ["webhook"], "webhook_url": "http://127.0.0.1:1/hook"})
    r = run_cli(s, ["alerting"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "webhook_secret" in r.stderr and "webhook_allow_unsigned" in r.stderr
    r = run_cli(s, ["webhook-receiver", "--port", "0", "--out", str(tmp_path / "p.jsonl")], tmp_path)
    assert r.returncode == 2 and "webhook_secret" in r.stderr
    with pytest.raises(ValueError):
        WebhookReceiver()


# ---------------------------------------------------------------- receiver: verify, then de-duplicate


def _post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=5)


def test_receiver_rejects_forgeries_and_dedups_on_the_signed_key_across_restarts(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    headers, body = _signed("inc-7")
    with WebhookReceiver(secret=SECRET, out=out) as recv:
        assert _post(recv.url, headers, body).json() == {"ok": True, "duplicate": False}
        again = _post(recv.url, headers | {"X-SpillWatch-Attempt": "2"}, body)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        # the captured request under another key (to get a second page through): rejected
        assert _post(recv.url, headers | {IDEMPOTENCY_HEADER: "inc-7:confirmed:2"}, body).status_code == 401
        nan = headers | {TIMESTAMP_HEADER: "nan", SIGNATURE_HEADER: _mac("nan", headers[IDEMPOTENCY_HEADER], body)}
        assert _post(recv.url, nan, body).status_code == 401
        assert [p["idempotency_key"] for p in recv.pages] == ["inc-7:confirmed"]
        assert len(recv.duplicates) == 1 and len(recv.rejected) == 2
    # a new receiver on the same file remembers the key: still one page
    fresh, body2 = _signed("inc-7")
    with WebhookReceiver(secret=SECRET, out=out) as recv:
        assert _post(recv.url, fresh, body2).json()["duplicate"] is True
        assert recv.pages == []
    assert len(out.read_text().splitlines()) == 1


# ---------------------------------------------------------------- the README's receiver snippet


def readme_snippet() -> dict[str, Any]:
    text = README.read_text()
    m = re.search(r"<!-- receiver-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert m, "alerting/README.md lost its receiver snippet"
    namespace: dict[str, Any] = {}
    exec(compile(m.group(1), str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_readme_snippet_verifies_real_pages_and_rejects_the_rest() -> None:
    """The snippet runs in a real HTTP server receiving the real notifier's requests."""
    verify_page = readme_snippet()["verify_spillwatch_page"]
    got: list[tuple[int, str]] = []
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            return None

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                key = verify_page(SECRET, self.headers, body)
                status, what = (200, f"duplicate {key}") if key in seen else (200, f"page {key}")
                seen.add(key)
            except ValueError as exc:
                status, what = 401, str(exc)
            got.append((status, what))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    try:
        good = WebhookNotifier(url, SECRET, timeout_s=5)
        assert good.send(Page(make_alert(incident="inc-r"), "webhook")).ok
        assert good.send(Page(make_alert(incident="inc-r"), "webhook", attempt=2)).ok  # a retry
        good.close()
        bad = WebhookNotifier(url, b"wrong", timeout_s=5)
        assert not bad.send(Page(make_alert(incident="inc-s"), "webhook")).ok
        bad.close()
        headers, body = _signed("inc-t")
        assert _post(url, headers | {IDEMPOTENCY_HEADER: "inc-t:cleared"}, body).status_code == 401
        nan = headers | {TIMESTAMP_HEADER: "nan", SIGNATURE_HEADER: _mac("nan", headers[IDEMPOTENCY_HEADER], body)}
        assert _post(url, nan, body).status_code == 401
        old = str(int(time.time()) - 3600)
        stale = headers | {TIMESTAMP_HEADER: old, SIGNATURE_HEADER: _mac(old, headers[IDEMPOTENCY_HEADER], body)}
        assert _post(url, stale, body).status_code == 401
    finally:
        srv.shutdown()
        srv.server_close()
    assert got == [
        (200, "page inc-r:confirmed"),
        (200, "duplicate inc-r:confirmed"),
        (401, "bad signature"),
        (401, "bad signature"),
        (401, "malformed timestamp or idempotency key"),
        (401, "stale timestamp"),
    ]


def test_readme_snippet_agrees_with_the_library_verify() -> None:
    verify_page = readme_snippet()["verify_spillwatch_page"]
    headers, body = _signed()
    assert verify_page(SECRET, headers, body) == headers[IDEMPOTENCY_HEADER]
    for bad in ({TIMESTAMP_HEADER: "1e9"}, {IDEMPOTENCY_HEADER: "x"}, {SIGNATURE_HEADER: "sha256=00"}):
        h = headers | bad
        assert not _check(h, body)
        with pytest.raises(ValueError):
            verify_page(SECRET, h, body)
