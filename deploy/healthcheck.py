"""Container healthcheck: is this SpillWatch service answering on its Prometheus /metrics port?

Usage (inside the image, see deploy/docker-compose.yml)::

    python /opt/spillwatch/healthcheck.py worker      # probes SPILLWATCH_WORKER__METRICS_PORT
    python /opt/spillwatch/healthcheck.py             # probes every SPILLWATCH_*__METRICS_PORT set

Standard library only (the slim runtime image has no curl). Exit 0 when every probed endpoint answers
200 with SpillWatch metrics in the body, 1 otherwise (the reason goes to stderr, which Docker keeps in
`docker inspect`). It proves the process is up and its metrics thread serves; a stuck consumer loop
shows in the metrics themselves (consumer lag, frames classified), which Prometheus alerts on.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

PREFIX = "SPILLWATCH_"
SUFFIX = "__METRICS_PORT"


def metrics_ports(env: Mapping[str, str], section: str | None) -> dict[str, int]:
    """Ports to probe: ``{section: port}`` from ``SPILLWATCH_<SECTION>__METRICS_PORT``."""
    found: dict[str, int] = {}
    for key, value in env.items():
        k = key.upper()
        if not (k.startswith(PREFIX) and k.endswith(SUFFIX)) or not value.strip():
            continue
        name = k[len(PREFIX) : -len(SUFFIX)].lower()
        if section is None or name == section.lower():
            found[name] = int(value)
    return found


def probe(port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> str | None:
    """None when http://host:port/metrics answers 200 with spillwatch metrics, else the reason."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed http URL)
            body = resp.read(2_000_000)
            if resp.status != 200:
                return f"{url}: HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    if b"spillwatch_" not in body:
        return f"{url}: no spillwatch_ metrics in the answer"
    return None


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    section = args[0] if args else None
    ports = metrics_ports(os.environ if env is None else env, section)
    if not ports:
        what = f"{PREFIX}{section.upper()}{SUFFIX}" if section else f"{PREFIX}*{SUFFIX}"
        print(f"unhealthy: {what} is not set, nothing to probe", file=sys.stderr)
        return 1
    failures = [r for r in (probe(p) for p in ports.values()) if r]
    for reason in failures:
        print(f"unhealthy: {reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
