"""Container healthcheck: is this SpillWatch service answering on its Prometheus /metrics port?

Usage (inside the image, see deploy/docker-compose.yml)::

    python /opt/spillwatch/healthcheck.py worker      # probes SPILLWATCH_WORKER__METRICS_PORT
    python /opt/spillwatch/healthcheck.py             # probes every SPILLWATCH_*__METRICS_PORT set

Standard library only (the slim runtime image has no curl). Exit 0 when every probed endpoint answers
200 with SpillWatch metrics in the body, 1 otherwise (the reason goes to stderr, which Docker keeps in
`docker inspect`). For the console it also asks its ``/healthz`` (200 only while Redis answers and
its topic readers run). The metrics endpoint alone proves the process is up and
its metrics thread serves; a stuck consumer loop shows in the metrics themselves (consumer lag,
frames classified), which the Prometheus rules alert on.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

PREFIX = "SPILLWATCH_"
SUFFIX = "__METRICS_PORT"
# sections with a deeper health endpoint: section -> variable holding its port
HEALTHZ_PORT_VARS = {"console": "SPILLWATCH_CONSOLE__PORT"}


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


def _get(url: str, timeout: float) -> tuple[bytes | None, str | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed http URL)
            body = resp.read(2_000_000)
            if resp.status != 200:
                return None, f"{url}: HTTP {resp.status}"
            return body, None
    except urllib.error.HTTPError as exc:
        return None, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return None, f"{url}: {exc}"


def probe(port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> str | None:
    """None when http://host:port/metrics answers 200 with spillwatch metrics, else the reason."""
    url = f"http://{host}:{port}/metrics"
    body, err = _get(url, timeout)
    if err:
        return err
    if body is None or b"spillwatch_" not in body:
        return f"{url}: no spillwatch_ metrics in the answer"
    return None


def probe_healthz(port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> str | None:
    """None when http://host:port/healthz answers 200, else the reason."""
    return _get(f"http://{host}:{port}/healthz", timeout)[1]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    section = args[0] if args else None
    env_map = os.environ if env is None else env
    ports = metrics_ports(env_map, section)
    if not ports:
        what = f"{PREFIX}{section.upper()}{SUFFIX}" if section else f"{PREFIX}*{SUFFIX}"
        print(f"unhealthy: {what} is not set, nothing to probe", file=sys.stderr)
        return 1
    failures = [r for r in (probe(p) for p in ports.values()) if r]
    for name in ports:
        var = HEALTHZ_PORT_VARS.get(name)
        value = env_map.get(var, "").strip() if var else ""
        if value:
            reason = probe_healthz(int(value))
            if reason:
                failures.append(reason)
    for reason in failures:
        print(f"unhealthy: {reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
