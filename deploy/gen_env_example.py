"""Generate deploy/.env.example from the Settings model and the compose file, so neither can drift.

    python deploy/gen_env_example.py            # rewrite deploy/.env.example
    python deploy/gen_env_example.py --check    # exit 1 when the file is stale (tests run this logic)

The file lists:
  * the compose-level ``DEPLOY_*`` variables that deploy/docker-compose.yml interpolates (with their
    defaults, taken from the compose file itself);
  * EVERY setting the services read (walked from ``spillwatch.settings.Settings``, nested sections
    joined with ``__``), with its description and default. Settings that the compose file sets
    under ``environment:`` are shown commented out ("set by docker-compose.yml"), since the
    environment wins over the env file; a few are given deploy-recommended values (``SITE_VALUES``);
    everything else is commented out at its default.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY_DIR / ".env.example"
ENV_PREFIX = "SPILLWATCH_"
DELIM = "__"

# Values this deployment recommends (active lines in .env.example). Everything else stays at the
# Settings default, commented out.
SITE_VALUES: dict[str, str] = {
    # size for the most workers you will run: partitions >= workers (12 divides evenly by 1,2,3,4,6,12)
    "SPILLWATCH_KAFKA__PARTITIONS": "12",
    "SPILLWATCH_KAFKA__REPLICATION_FACTOR": "1",
    "SPILLWATCH_LOG_FORMAT": "json",
    "SPILLWATCH_ALERTING__CHANNELS": '["console"]',
}

# Descriptions of the compose-level variables (the defaults come from the compose file).
DEPLOY_DOCS: dict[str, str] = {
    "DEPLOY_WORKERS": "classifier worker replicas (keep <= SPILLWATCH_KAFKA__PARTITIONS); `up --scale worker=N` overrides it once",
    "DEPLOY_MODEL_FILE": "model file in the image's models/ (spillwatch-int8.onnx: faster on CPUs with VNNI/AMX; compare first)",
    "DEPLOY_IMAGE": "SpillWatch image built from deploy/Dockerfile (tag it per release to roll back)",
    "DEPLOY_KAFKA_IMAGE": "official Apache Kafka image (KRaft)",
    "DEPLOY_KAFKA_BOOTSTRAP": "bootstrap servers the services use; kafka3 profile: kafka:9092,kafka-2:9092,kafka-3:9092",
    "DEPLOY_KAFKA_BROKERS": "brokers the kafka healthcheck waits for (3 with --profile kafka3)",
    "DEPLOY_KAFKA_INTERNAL_RF": "replication of Kafka's internal topics (3 with --profile kafka3)",
    "DEPLOY_KAFKA_MIN_ISR": "min.insync.replicas (2 with --profile kafka3 and replication 3)",
    "DEPLOY_KAFKA_CLUSTER_ID": "KRaft cluster id (22-char base64 UUID); fixed once the data volume exists",
    "DEPLOY_KAFKA_HEAP_OPTS": "JVM heap of each broker",
    "DEPLOY_REDIS_IMAGE": "Redis image (valkey/valkey:8 works too)",
    "DEPLOY_REDIS_URL": "Redis URL the services use (put a password here if Redis has one)",
    "DEPLOY_CONFIG_FILE": "cameras/config YAML mounted at /etc/spillwatch/config.yml (relative to deploy/)",
    "DEPLOY_MEDIA_DIR": "host folder mounted read-only at /opt/spillwatch/media for file/folder cameras",
    "DEPLOY_CONSOLE_BIND": "host address of the console (0.0.0.0 exposes it beyond this host: put TLS in front first)",
    "DEPLOY_CONSOLE_PORT": "host port of the console",
    "DEPLOY_KAFKA_EXPORTER_IMAGE": "consumer-lag exporter (monitoring profile)",
    "DEPLOY_PROMETHEUS_IMAGE": "Prometheus image (monitoring profile)",
    "DEPLOY_PROMETHEUS_BIND": "host address of Prometheus (monitoring profile)",
    "DEPLOY_PROMETHEUS_PORT": "host port of Prometheus (monitoring profile)",
    "DEPLOY_PROMETHEUS_RETENTION": "how long Prometheus keeps samples",
    "DEPLOY_SECRETS_DIR": (
        "folder of the Docker secrets (one file each: camera_sources.json, webhook_secret, slack_webhook_url, "
        "pagerduty_routing_key, smtp_password); keep it outside the repository, mode 700. Secrets never go in "
        "this file: every service reads all of it"
    ),
}

_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@dataclass(frozen=True)
class SettingVar:
    env: str  # SPILLWATCH_SECTION__FIELD
    path: tuple[str, ...]  # ("section", "field")
    default: Any
    description: str | None
    annotation: Any


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class of a field annotation (unwrapping Optional), or None for a leaf."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        others = [a for a in typing.get_args(annotation) if a is not type(None) and a not in models]
        if len(models) == 1 and not others:
            return models[0]
    return None


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def setting_vars(model: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()) -> list[SettingVar]:
    """Every leaf setting of ``Settings`` as an environment variable (nested models walked)."""
    if model is None:
        from spillwatch.settings import Settings

        model = Settings
    out: list[SettingVar] = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        sub = _model_of(field.annotation)
        if sub is not None:
            out.extend(setting_vars(sub, path))
            continue
        env = ENV_PREFIX + DELIM.join(p.upper() for p in path)
        out.append(SettingVar(env, path, _default(field), field.description, field.annotation))
    return out


def setting_env_names() -> set[str]:
    return {v.env for v in setting_vars()}


def render_value(value: Any) -> str:
    """How pydantic-settings reads the value back from the environment."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        # defaults under the repository are shown relative to it (the file must not name this machine)
        try:
            return str(value.resolve().relative_to(REPO_ROOT))
        except ValueError:
            return str(value)
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value if not isinstance(value, tuple) else list(value), default=str)
    return str(value)


def compose_variables(text: str | None = None) -> dict[str, str]:
    """``DEPLOY_*`` variables interpolated in the compose file -> their default (first one seen)."""
    if text is None:
        text = COMPOSE_FILE.read_text()
    found: dict[str, str] = {}
    for m in _INTERP.finditer(text):
        name, op, default = m.group(1), m.group(2), m.group(3)
        if name.startswith("DEPLOY_") and name not in found:
            found[name] = default if op in (":-", "-") else ""
    return found


def compose_set_settings(text: str | None = None) -> dict[str, set[str]]:
    """SPILLWATCH_* variables set under ``environment:`` in the compose file -> services setting them."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text() if text is None else text)
    out: dict[str, set[str]] = {}
    for svc_name, svc in (doc.get("services") or {}).items():
        env = svc.get("environment") or {}
        keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        for k in keys:
            if k.startswith(ENV_PREFIX):
                out.setdefault(k, set()).add(svc_name)
    return out


def compose_secret_settings(text: str | None = None) -> dict[str, set[str]]:
    """SPILLWATCH_* settings the compose file gives as Docker secrets (by target name) -> services."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text() if text is None else text)
    out: dict[str, set[str]] = {}
    for svc_name, svc in (doc.get("services") or {}).items():
        for item in svc.get("secrets") or []:
            target = item if isinstance(item, str) else item.get("target") or item["source"]
            if str(target).upper().startswith(ENV_PREFIX):
                out.setdefault(str(target).upper(), set()).add(svc_name)
    return out


def _wrap_comment(text: str, width: int = 100) -> list[str]:
    words, lines, cur = text.split(), [], "#"
    for w in words:
        if len(cur) + 1 + len(w) > width and cur != "#":
            lines.append(cur)
            cur = "#"
        cur += " " + w
    if cur != "#":
        lines.append(cur)
    return lines


def generate(compose_text: str | None = None) -> str:
    compose_text = COMPOSE_FILE.read_text() if compose_text is None else compose_text
    lines: list[str] = [
        "# SpillWatch deployment settings. GENERATED by deploy/gen_env_example.py from spillwatch/settings.py",
        "# and deploy/docker-compose.yml: do not edit by hand, re-run the script (a test checks it is current).",
        "#",
        "# Copy to the repository root and edit:  cp deploy/.env.example .env",
        "# Then:  docker compose -p spillwatch -f deploy/docker-compose.yml --env-file .env up -d",
        "# (--env-file feeds the DEPLOY_* variables to compose; the services read SPILLWATCH_* from the",
        "# same file through env_file. Lists are JSON, e.g. SPILLWATCH_ALERTING__CHANNELS=[\"webhook\",\"slack\"].",
        "# An unset optional setting must stay commented out: an empty value is not 'None'.)",
        "",
        "# ---------------------------------------------------------------- compose-level (DEPLOY_*)",
    ]
    for name, default in sorted(compose_variables(compose_text).items()):
        doc = DEPLOY_DOCS.get(name)
        if doc:
            lines.extend(_wrap_comment(doc))
        lines.append(f"# {name}={default}")
    set_by_compose = compose_set_settings(compose_text)
    secret_targets = compose_secret_settings(compose_text)
    section: str | None = None
    all_vars = setting_vars()
    # top-level settings first, then each section in the order of the Settings model
    ordered = [v for v in all_vars if len(v.path) == 1] + [v for v in all_vars if len(v.path) > 1]
    for var in ordered:
        sec = var.path[0] if len(var.path) > 1 else "general"
        if sec != section:
            section = sec
            lines += ["", f"# ---------------------------------------------------------------- {sec}"]
        if var.description:
            lines.extend(_wrap_comment(var.description))
        if "SecretStr" in repr(var.annotation) and var.env in secret_targets:
            lines.append(f"# a secret: a file under DEPLOY_SECRETS_DIR, given to {', '.join(sorted(secret_targets[var.env]))} only"
                         " (docker-compose.yml `secrets:`), not this file")
        if var.env in set_by_compose:
            services = ", ".join(sorted(set_by_compose[var.env]))
            lines.append(f"# set by docker-compose.yml ({services}); the environment there wins over this file")
            lines.append(f"# {var.env}={render_value(var.default)}")
        elif var.env == "SPILLWATCH_CAMERAS":
            lines.append("# the cameras list belongs in the YAML config file (deploy/cameras.example.yml)")
            lines.append(f"# {var.env}=[]")
        elif var.env in SITE_VALUES:
            lines.append(f"# default: {render_value(var.default)}")
            lines.append(f"{var.env}={SITE_VALUES[var.env]}")
        else:
            lines.append(f"# {var.env}={render_value(var.default)}")
    unknown = set(SITE_VALUES) - setting_env_names()
    if unknown:
        raise SystemExit(f"SITE_VALUES names settings that do not exist: {sorted(unknown)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = generate()
    if "--check" in args:
        current = ENV_EXAMPLE.read_text() if ENV_EXAMPLE.exists() else ""
        if current != text:
            print(f"{ENV_EXAMPLE} is stale: run python deploy/gen_env_example.py", file=sys.stderr)
            return 1
        return 0
    ENV_EXAMPLE.write_text(text)
    print(f"wrote {ENV_EXAMPLE}")
    return 0


if __name__ == "__main__":
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
