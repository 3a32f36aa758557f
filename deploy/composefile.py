"""Read deploy/docker-compose.yml the way Docker Compose does, without Docker.

Used by the tests (schema validation, consistency with the settings, running the services' exact
commands outside containers) and handy for operators (``python deploy/composefile.py`` prints each
service's command and environment after interpolation).

Only what SpillWatch's compose file uses is implemented: YAML anchors/merge keys (PyYAML does them),
``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?message}``, ``$VAR`` and ``$$``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEPLOY_DIR = Path(__file__).resolve().parent
COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
SCHEMA_FILE = DEPLOY_DIR / "schema" / "compose-spec.json"

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def interpolate_str(text: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        if op in (":?", "?"):
            if (op == ":?" and not value) or value is None:
                raise InterpolationError(f"{name}: {arg or 'required'}")
            return value
        return value or ""

    return _VAR.sub(sub, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (not keys) of a loaded compose document."""
    if isinstance(node, str):
        return interpolate_str(node, env)
    if isinstance(node, list):
        return [interpolate(n, env) for n in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


# Fields Compose converts to numbers after interpolation (the ones this compose file interpolates).
_INT_FIELDS = {"replicas", "scale", "retries"}


def _convert(node: Any, key: str | None = None) -> Any:
    if isinstance(node, dict):
        return {k: _convert(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if key in _INT_FIELDS and isinstance(node, str) and node.strip().isdigit():
        return int(node)
    return node


def load(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose document after YAML merge keys, interpolation and Compose's type conversion of
    numeric fields (``env`` defaults to empty, so every ``${VAR:-default}`` takes its default, as on
    a site without overrides)."""
    raw = yaml.safe_load(path.read_text())
    return _convert(interpolate(raw, env or {}))


def profiles_of(svc: Mapping[str, Any]) -> list[str]:
    return list(svc.get("profiles") or [])


def env_dict(environment: Any) -> dict[str, str]:
    """A service's ``environment`` (mapping or list form) as a dict of strings."""
    if not environment:
        return {}
    if isinstance(environment, dict):
        return {str(k): _env_value(v) for k, v in environment.items()}
    out: dict[str, str] = {}
    for item in environment:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _env_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def read_env_file(path: Path) -> dict[str, str]:
    """A compose env_file: KEY=VALUE lines, comments and blank lines skipped, no interpolation."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


@dataclass(frozen=True)
class BindMount:
    source: Path  # on the host, resolved against the compose file's folder
    target: str  # in the container
    read_only: bool


@dataclass(frozen=True)
class SecretMount:
    name: str  # the top-level secret
    source: Path  # its file on the host, resolved against the compose file's folder
    target: str  # in the container: /run/secrets/<target>


SECRETS_DIR = "/run/secrets"


@dataclass
class Service:
    name: str
    spec: dict[str, Any]
    command: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    binds: list[BindMount] = field(default_factory=list)
    named_volumes: dict[str, str] = field(default_factory=dict)  # volume -> container path
    secrets: list[SecretMount] = field(default_factory=list)

    def materialize_secrets(self, dest: Path) -> Path:
        """What the container sees at /run/secrets, as a folder on this host: a copy of each of the
        service's secret files under its target name (tests run the services outside containers)."""
        dest.mkdir(parents=True, exist_ok=True)
        for sec in self.secrets:
            (dest / sec.target).write_bytes(sec.source.read_bytes())
        return dest

    @property
    def long_running(self) -> bool:
        return str(self.spec.get("restart", "no")) != "no"

    def host_path(self, container_path: str) -> Path | None:
        """Host path of a container path that lies in a bind mount (None otherwise)."""
        for b in sorted(self.binds, key=lambda b: len(b.target), reverse=True):
            if container_path == b.target or container_path.startswith(b.target.rstrip("/") + "/"):
                rest = container_path[len(b.target) :].lstrip("/")
                return b.source / rest if rest else b.source
        return None


def _volumes(spec: Mapping[str, Any], base: Path) -> tuple[list[BindMount], dict[str, str]]:
    binds: list[BindMount] = []
    named: dict[str, str] = {}
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            src, tgt, ro, kind = v.get("source"), v["target"], bool(v.get("read_only")), v.get("type")
        else:
            parts = str(v).split(":")
            src, tgt = parts[0], parts[1]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if src.startswith((".", "/", "~")) else "volume"
        if kind == "bind":
            binds.append(BindMount((base / str(src)).resolve(), str(tgt), ro))
        else:
            named[str(src)] = str(tgt)
    return binds, named


def _secrets(spec: Mapping[str, Any], top: Mapping[str, Any], base: Path) -> list[SecretMount]:
    """A service's secrets (short or long syntax) with their files (top-level ``secrets:``)."""
    out: list[SecretMount] = []
    for item in spec.get("secrets") or []:
        name, target = (item, item) if isinstance(item, str) else (item["source"], item.get("target") or item["source"])
        definition = top.get(name) or {}
        if "file" not in definition:
            raise ValueError(f"secret {name!r}: only file secrets are supported here")
        out.append(SecretMount(name, (base / str(definition["file"])).resolve(), str(target)))
    return out


def services(doc: Mapping[str, Any] | None = None, base: Path = DEPLOY_DIR) -> dict[str, Service]:
    doc = load() if doc is None else doc
    top_secrets = doc.get("secrets") or {}
    out: dict[str, Service] = {}
    for name, spec in (doc.get("services") or {}).items():
        cmd = spec.get("command") or []
        command = cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]
        binds, named = _volumes(spec, base)
        out[name] = Service(name, dict(spec), command, env_dict(spec.get("environment")), binds, named,
                            _secrets(spec, top_secrets, base))
    return out


def dockerfile_env(path: Path = DEPLOY_DIR / "Dockerfile", stage: str = "runtime") -> dict[str, str]:
    """``ENV`` variables set in one stage of a Dockerfile (``KEY=VALUE`` form, no quoting)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    env: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, flags=re.I)
        if m:
            current = m.group(1)
            continue
        if current == stage and line.upper().startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line[4:])))
    return env


def main() -> int:
    for name, svc in services().items():
        prof = f" (profiles: {', '.join(profiles_of(svc.spec))})" if profiles_of(svc.spec) else ""
        print(f"{name}{prof}: {' '.join(svc.command) or svc.spec.get('image')}")
        for k, v in sorted(svc.environment.items()):
            if k.startswith("SPILLWATCH_"):
                print(f"    {k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
