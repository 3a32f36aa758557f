"""Redaction of credentials in anything that leaves a process as text: log lines, events, error
strings, metric labels. One function family, used everywhere (``redact_text`` is the entry point).

What is hidden:

- the userinfo of a URL (``rtsp://user:pass@host`` -> ``rtsp://***@host``), also when the password
  holds characters a URL parser splits on (``/``, ``@``, ``?``, ``#``, ``:``). Such URLs are
  ambiguous by definition, so the rule errs on the side of hiding too much: everything between
  ``scheme://`` and the **last** ``@`` (not counting one inside a credential value of the query)
  is userinfo when that part has no ``/``, or has a ``:`` before its first ``/``
  (``user:pa/ss@host``). A path containing ``@`` after a ``host:port`` (``http://h:80/a@b``) is
  hidden too (over-redaction, never a leak);
- the value of credential-like query, fragment or ``;`` parameters (``password``, ``token``,
  ``key``, ``sig``, ... see ``SECRET_PARAMS``), up to the next ``&``/``;``/``#`` or the end,
  whatever characters the value holds (``?password=p@ss/w0rd`` -> ``?password=***``);
- in mappings (structured log events), the value of keys that name a secret (``password``,
  ``secret``, ``token``, ``authorization``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "***"

# Query/fragment parameter names whose value is a credential (matched case-insensitively, also as
# a suffix: "x_api_key", "camera_password").
SECRET_PARAMS = (
    "password", "passwd", "pass", "pwd", "passphrase", "secret", "token", "access_token", "refresh_token",
    "auth", "authorization", "api_key", "apikey", "key", "sig", "signature", "credential", "credentials",
    "user", "username", "login", "session", "sessionid", "routing_key",
)
_PARAM_NAMES = "|".join(sorted((re.escape(p) for p in SECRET_PARAMS), key=len, reverse=True))
_QUERY_SECRET = re.compile(
    rf"(?i)([?&;#](?:[A-Za-z0-9_.\-]*[_.\-])?(?:{_PARAM_NAMES})\s*=)[^&;#\s\"'<>]*"
)
# A URL inside free text: scheme://, then anything up to whitespace or a quote/bracket that ends it.
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s\"'<>`]+)")
_SCHEME = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://)(.*)$", re.S)

# Keys of a structured log event whose value is a secret as a whole.
_SECRET_KEY = re.compile(r"(?i)(^|_)(password|passwd|secret|token|authorization|api_key|apikey|routing_key|credentials?)$")


def _userinfo_end(rest: str, query_spans: list[tuple[int, int]] = ()) -> int:  # type: ignore[assignment]
    """Index of the ``@`` that ends the userinfo in ``rest`` (the URL after ``scheme://``), or -1.
    An ``@`` inside the value of a credential parameter of the query (``query_spans``) is not one."""
    ats = [i for i, ch in enumerate(rest) if ch == "@" and not any(a <= i < b for a, b in query_spans)]
    if not ats:
        return -1
    at = ats[-1]
    head = rest[:at]
    slash = head.find("/")
    if slash < 0 or ":" in head[:slash]:
        return at
    return -1


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the union of ``spans`` (start, end) replaced by ``***``, one per merged run."""
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:  # overlaps the previous run: extend it
            pos = max(pos, end)
            continue
        out.append(text[pos:start] + MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _param_spans(text: str, offset: int = 0) -> list[tuple[int, int]]:
    return [(offset + m.end(1), offset + m.end()) for m in _QUERY_SECRET.finditer(text) if m.end() > m.end(1)]


def _redact_url_rest(scheme: str, rest: str) -> str:
    # Both rules on the original text, masked as a union: a password holding "?x=" cannot hide
    # the userinfo from the first rule, nor a query value holding "@" hide itself from the second.
    spans = _param_spans(rest)
    q = rest.find("?")
    at = _userinfo_end(rest, [sp for sp in spans if q >= 0 and sp[0] > q])
    if at >= 0:
        spans.append((0, at))
    return scheme + _mask(rest, spans)


def redact_url(url: str) -> str:
    """``url`` with its userinfo and credential-like parameters replaced by ``***``."""
    m = _SCHEME.match(url)
    if m is None:
        return _mask(url, _param_spans(url))
    return _redact_url_rest(m.group(1), m.group(2))


def redact_text(text: str) -> str:
    """Free text (an error message, a log line) with every URL in it redacted, and credential-like
    ``?name=value`` parameters outside URLs too."""
    if "://" not in text and "=" not in text:
        return text
    out = _URL.sub(lambda m: _redact_url_rest(m.group(1), m.group(2)), text)
    return _mask(out, [s for s in _param_spans(out) if out[s[0]:s[1]] != MASK])


def redact_value(value: Any, key: str | None = None) -> Any:
    """Strings redacted; mappings and sequences walked; a value under a secret-named key masked."""
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", b""):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def structlog_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: redact every value of the event (message, fields, formatted traceback)."""
    return {k: redact_value(v, k) for k, v in event_dict.items()}
