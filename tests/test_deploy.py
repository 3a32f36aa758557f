"""deploy/: the compose file, Dockerfile, .env.example and Prometheus config, checked without Docker.

No Docker engine runs here, so these tests check what can be checked statically: the compose file
against the Compose Specification JSON schema (deploy/schema/compose-spec.json), and its consistency
with the code: every SPILLWATCH_* variable a service sets is a real setting that pydantic-settings
reads, every service command is a real `spillwatch` subcommand, scaled services have no fixed names
or host ports, long-running services have healthchecks and restart policies, Prometheus scrapes
every service on its metrics port, .env.example is generated from the Settings model and current.
The services' commands are run for real in tests/test_compose_services.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from tests.helpers.deploy import DEPLOY, REPO, composefile, gen_env, healthcheck, resolve_command, spillwatch_command

# Services that `docker compose up --scale NAME=N` may scale.
SCALED = {"worker"}
SPILLWATCH_IMAGE_MARK = "spillwatch"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return composefile.load()


@pytest.fixture(scope="module")
def services(doc: dict[str, Any]) -> dict[str, Any]:
    return composefile.services(doc)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(composefile.SCHEMA_FILE.read_text())


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # the schema declares draft 2019-09 (with a $schema URL jsonschema does not recognise)
    return jsonschema.Draft201909Validator(schema)


def _spillwatch_services(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.command[:1] == ["spillwatch"]}


# ------------------------------------------------------------------ schema


def test_compose_file_is_valid_against_the_compose_spec(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    errors = sorted(_validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:200]}" for e in errors)


def test_compose_file_is_valid_with_the_kafka3_variables(schema: dict[str, Any]) -> None:
    env = {
        "DEPLOY_KAFKA_BOOTSTRAP": "kafka:9092,kafka-2:9092,kafka-3:9092",
        "DEPLOY_KAFKA_BROKERS": "3",
        "DEPLOY_KAFKA_INTERNAL_RF": "3",
        "DEPLOY_KAFKA_MIN_ISR": "2",
    }
    doc = composefile.load(env=env)
    assert not list(_validator(schema).iter_errors(doc))
    kafka_env = doc["services"]["kafka-2"]["environment"]
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
    assert doc["services"]["worker"]["environment"]["SPILLWATCH_KAFKA__BOOTSTRAP"].count(":9092") == 3


@pytest.mark.parametrize(
    "mutation",
    [
        lambda d: d["services"]["worker"].update(container_nam="typo"),
        lambda d: d["services"]["redis"].update(healthcheck={"test": ["CMD", "true"], "intervall": "5s"}),
        lambda d: d["services"]["worker"].update(depends_on={"redis": {"condition": "service_ready"}}),
        lambda d: d.update(servces={}),
    ],
    ids=["unknown-service-key", "unknown-healthcheck-key", "bad-depends-condition", "unknown-top-level"],
)
def test_schema_rejects_broken_compose_files(doc: dict[str, Any], schema: dict[str, Any], mutation: Any) -> None:
    broken = json.loads(json.dumps(doc))
    mutation(broken)
    assert list(_validator(schema).iter_errors(broken)), "the schema check must catch this"


def test_schema_copy_names_its_source() -> None:
    readme = (DEPLOY / "schema" / "README.md").read_text()
    assert "compose-spec" in readme and "sha256" in readme
    import hashlib

    digest = hashlib.sha256(composefile.SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest in readme, "README.md must record the sha256 of the schema copy"


def test_interpolation_follows_compose_rules() -> None:
    f = composefile.interpolate_str
    assert f("${A:-x}", {}) == "x"
    assert f("${A:-x}", {"A": ""}) == "x"
    assert f("${A-x}", {"A": ""}) == ""
    assert f("${A}-$B", {"A": "1", "B": "2"}) == "1-2"
    assert f("$$(cmd) $${X}", {}) == "$(cmd) ${X}"
    with pytest.raises(composefile.InterpolationError):
        f("${A:?set A}", {})


# ------------------------------------------------------------------ topology


def test_expected_services_and_profiles(doc: dict[str, Any]) -> None:
    svcs = doc["services"]
    default = {n for n, s in svcs.items() if not s.get("profiles")}
    assert {"kafka", "redis", "topic-init", "producer", "worker", "aggregator", "alerting"} <= default
    assert {n for n, s in svcs.items() if "kafka3" in (s.get("profiles") or [])} == {"kafka-2", "kafka-3"}
    assert "prometheus" in {n for n, s in svcs.items() if "monitoring" in (s.get("profiles") or [])}
    for name in ("kafka", "kafka-2", "kafka-3"):
        assert svcs[name]["image"].startswith("apache/kafka:"), name
        assert svcs[name]["environment"]["KAFKA_PROCESS_ROLES"].startswith("broker")
    assert svcs["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_kraft_listeners_are_consistent(doc: dict[str, Any]) -> None:
    svcs = doc["services"]
    ids = set()
    for name in ("kafka", "kafka-2", "kafka-3"):
        env = svcs[name]["environment"]
        ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
        assert any(v.endswith(":/var/lib/kafka/data") for v in svcs[name]["volumes"])
    assert len(ids) == 3


def test_worker_replicas_come_from_deploy_workers(schema: dict[str, Any]) -> None:
    doc = composefile.load(env={"DEPLOY_WORKERS": "6"})
    assert doc["services"]["worker"]["deploy"]["replicas"] == 6
    assert not list(_validator(schema).iter_errors(doc))
    partitions = int(composefile.read_env_file(DEPLOY / ".env.example")["SPILLWATCH_KAFKA__PARTITIONS"])
    assert composefile.load()["services"]["worker"]["deploy"]["replicas"] <= partitions


def test_scaled_services_have_no_fixed_names_or_host_ports(doc: dict[str, Any]) -> None:
    for name in SCALED:
        svc = doc["services"][name]
        assert "container_name" not in svc, name
        assert "ports" not in svc, f"{name}: host ports would collide when scaled"
        assert "hostname" not in svc, name
    # no fixed container names anywhere: two stacks (or projects) on one host must not collide
    assert not [n for n, s in doc["services"].items() if "container_name" in s]


def test_long_running_services_have_healthchecks_and_restart_policies(doc: dict[str, Any]) -> None:
    svcs = doc["services"]
    long_running = [n for n, s in svcs.items() if n != "topic-init"]
    for name in long_running:
        svc = svcs[name]
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), name
        hc = svc.get("healthcheck") or {}
        assert not hc.get("disable") and hc.get("test"), f"{name} needs a healthcheck"
    one_shot = svcs["topic-init"]
    assert one_shot.get("restart") == "no"
    assert one_shot["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_pipeline_services_wait_for_topics_and_redis(services: dict[str, Any]) -> None:
    for name, svc in _spillwatch_services(services).items():
        if name == "topic-init":
            continue
        deps = svc.spec["depends_on"]
        assert deps["topic-init"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_redis_is_persistent(services: dict[str, Any]) -> None:
    redis = services["redis"]
    cmd = " ".join(redis.command)
    assert "--appendonly yes" in cmd and "noeviction" in cmd
    assert redis.named_volumes.get("redis-data") == "/data"


def test_volumes_for_kafka_redis_and_evidence(doc: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(doc["volumes"])
    assert {"kafka-data", "redis-data", "evidence"} <= declared
    for svc in services.values():
        assert set(svc.named_volumes) <= declared, svc.name
    # the aggregator writes the evidence snapshot, alerting serves and attaches it: one shared volume
    for name in ("aggregator", "alerting"):
        svc = services[name]
        assert svc.named_volumes["evidence"] == svc.environment["SPILLWATCH_ALERTING__EVIDENCE_DIR"], name
    archiver = services["archiver"]
    assert archiver.spec["profiles"] == ["archive"]
    assert archiver.named_volumes["archive"] == archiver.environment["SPILLWATCH_ARCHIVE__ROOT"]


def test_bind_mounts_exist_in_the_repository(services: dict[str, Any]) -> None:
    for svc in services.values():
        for b in svc.binds:
            if b.source == (REPO / "samples").resolve():
                continue  # sample clips, mounted for the optional demo camera
            assert b.source.exists(), f"{svc.name}: {b.source} is mounted but missing"
            assert b.read_only, f"{svc.name}: {b.target} should be read-only"


def test_every_spillwatch_service_reads_the_cameras_file(services: dict[str, Any]) -> None:
    for name, svc in _spillwatch_services(services).items():
        cfg = svc.environment["SPILLWATCH_CONFIG"]
        assert svc.host_path(cfg) == (DEPLOY / "cameras.example.yml").resolve(), name


def test_services_use_the_apache_kafka_profile(services: dict[str, Any]) -> None:
    for name, svc in _spillwatch_services(services).items():
        assert svc.environment["SPILLWATCH_KAFKA__PROFILE"] == "apache", name
        assert svc.environment["SPILLWATCH_KAFKA__BOOTSTRAP"] == "kafka:9092", name
        assert svc.spec["env_file"] == "../.env", name


# ------------------------------------------------------------------ consistency with the code


def test_every_spillwatch_variable_is_a_setting(services: dict[str, Any]) -> None:
    known = gen_env.setting_env_names()
    for name, svc in services.items():
        unknown = sorted(k for k in svc.environment if k.startswith("SPILLWATCH_") and k not in known)
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_service_environment_loads_into_settings(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pydantic-settings really reads each service's environment (not just: the names exist)."""
    from spillwatch.settings import Settings

    for name, svc in _spillwatch_services(services).items():
        with monkeypatch.context() as m:
            for k in list(os.environ):
                if k.startswith("SPILLWATCH_"):
                    m.delenv(k)
            for k, v in svc.environment.items():
                m.setenv(k, v)
            m.setenv("SPILLWATCH_CONFIG", str(svc.host_path(svc.environment["SPILLWATCH_CONFIG"])))
            if "SPILLWATCH_SECRETS_DIR" in svc.environment:  # /run/secrets: the service's Docker secrets
                assert svc.environment["SPILLWATCH_SECRETS_DIR"] == composefile.SECRETS_DIR
                m.setenv("SPILLWATCH_SECRETS_DIR", str(svc.materialize_secrets(tmp_path / name)))
            s = Settings()
            assert s.kafka.profile == "apache"
            assert s.kafka.bootstrap == "kafka:9092"
            assert s.redis.url == "redis://redis:6379/0"
            assert len(s.cameras) >= 2
            for k, v in svc.environment.items():
                if k in ("SPILLWATCH_CONFIG", "SPILLWATCH_SECRETS_DIR") or not k.startswith("SPILLWATCH_"):
                    continue
                path = k[len("SPILLWATCH_") :].lower().split("__")
                value: Any = s
                for p in path:
                    value = getattr(value, p)
                assert str(value) == v, f"{name}: {k}={v} read back as {value!r}"


def test_every_service_command_is_a_real_subcommand(services: dict[str, Any]) -> None:
    root = spillwatch_command()
    pipeline = _spillwatch_services(services)
    assert {"topic-init", "producer", "worker", "aggregator", "alerting", "archiver"} <= set(pipeline)
    for name, svc in pipeline.items():
        cmd, rest = resolve_command(root, svc.command[1:])
        assert not isinstance(cmd, click.Group), f"{name}: `{' '.join(svc.command)}` is a group, not a command"
        # the arguments parse (unknown options would fail here, as they would in the container)
        cmd.make_context(svc.command[-1], rest, resilient_parsing=False)


def test_cli_and_service_commands_load_without_torch(services: dict[str, Any]) -> None:
    """The runtime image has no torch: the CLI and every service command must resolve without it."""
    commands = [svc.command[1:] for svc in _spillwatch_services(services).values()]
    code = (
        "import sys, json\n"
        "sys.modules['torch'] = None  # `import torch` raises ImportError, as in the runtime image\n"
        "import typer, click\n"
        "import spillwatch.cli as c\n"
        "root = typer.main.get_command(c.app)\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    cmd = root\n"
        "    for a in args:\n"
        "        cmd = cmd.get_command(click.Context(cmd), a)\n"
        "        assert cmd is not None, args\n"
        "print('ok', len(json.loads(sys.argv[1])))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(commands)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"ok {len(commands)}"


# ------------------------------------------------------------------ healthchecks + Prometheus


def test_healthchecks_probe_each_service_metrics_port(services: dict[str, Any]) -> None:
    for name, svc in _spillwatch_services(services).items():
        if not svc.long_running:
            continue
        test = svc.spec["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/opt/spillwatch/healthcheck.py"], name
        section = test[3]
        port = svc.environment.get(f"SPILLWATCH_{section.upper()}__METRICS_PORT")
        assert port and port in [str(p) for p in svc.spec.get("expose", [])], f"{name}: metrics port not set/exposed"
        assert healthcheck.metrics_ports(svc.environment, section) == {section: int(port)}


def test_prometheus_scrapes_every_service(services: dict[str, Any]) -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped: dict[str, int] = {}
    for job in prom["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"
            for n in sd["names"]:
                scraped[n] = sd["port"]
    for name, svc in _spillwatch_services(services).items():
        if not svc.long_running:
            continue
        ports = [v for k, v in svc.environment.items() if k.endswith("__METRICS_PORT")]
        assert len(ports) == 1, name
        assert scraped.get(name) == int(ports[0]), f"Prometheus does not scrape {name} on {ports[0]}"
    assert "worker" in scraped  # the scaled service, by DNS: compose answers with every replica
    static = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "kafka-exporter:9308" in static  # consumer-group lag from Kafka's side
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert all(r["annotations"]["runbook"].startswith("docs/operations.md#") for g in rules["groups"] for r in g["rules"])


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_links_point_at_sections_of_the_operations_guide() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)}
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text())
    links = [r["annotations"]["runbook"].split("#", 1)[1] for g in rules["groups"] for r in g["rules"]]
    links += re.findall(r"\]\(#([^)]+)\)", doc)
    missing = sorted({a for a in links if a not in anchors})
    assert not missing, f"links to missing sections of docs/operations.md: {missing}"
    for section in ("camera-offline-or-stalled", "consumer-lag-growing", "webhook-or-other-channel-failing",
                    "broker-down", "redis-down", "dead-letter-topics-filling"):
        assert section in anchors, section


def test_prometheus_rules_use_metrics_that_exist() -> None:
    from prometheus_client import REGISTRY

    import spillwatch.metrics  # noqa: F401  (registers every metric)

    names = {m.name for m in REGISTRY.collect()}
    names |= {f"{n}_total" for n in names}
    rules = (DEPLOY / "prometheus-rules.yml").read_text()
    used = set(re.findall(r"\b(spillwatch_[a-z_]+)\b", rules))
    assert used and used <= names, sorted(used - names)


class _MetricsServer:
    def __init__(self) -> None:
        from prometheus_client import start_http_server

        import spillwatch.metrics  # noqa: F401

        self.server, self.thread = start_http_server(0, addr="127.0.0.1")
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_healthcheck_script_against_a_real_metrics_endpoint() -> None:
    srv = _MetricsServer()
    try:
        assert healthcheck.main(["worker"], {"SPILLWATCH_WORKER__METRICS_PORT": str(srv.port)}) == 0
        # all configured ports when no section is named (the Dockerfile's HEALTHCHECK)
        assert healthcheck.main([], {"SPILLWATCH_ALERTING__METRICS_PORT": str(srv.port)}) == 0
    finally:
        srv.close()
    # the same port after the server stopped: unhealthy
    assert healthcheck.main(["worker"], {"SPILLWATCH_WORKER__METRICS_PORT": str(srv.port)}) == 1
    # nothing to probe: unhealthy, not silently healthy
    assert healthcheck.main(["worker"], {"SPILLWATCH_ALERTING__METRICS_PORT": "1"}) == 1
    assert healthcheck.main([], {}) == 1


def test_healthcheck_rejects_a_port_that_is_not_spillwatch() -> None:
    import http.server

    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        assert healthcheck.main(["worker"], {"SPILLWATCH_WORKER__METRICS_PORT": str(port)}) == 1
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------ .env.example, cameras file


def test_env_example_is_generated_and_current() -> None:
    current = (DEPLOY / ".env.example").read_text()
    assert current == gen_env.generate(), "deploy/.env.example is stale: run `python deploy/gen_env_example.py`"


def test_env_example_covers_every_setting_and_compose_variable() -> None:
    text = (DEPLOY / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?((?:SPILLWATCH|DEPLOY)_[A-Z0-9_]+)=", text, flags=re.M))
    missing = gen_env.setting_env_names() - listed
    assert not missing, f"settings missing from .env.example: {sorted(missing)}"
    compose_text = (DEPLOY / "docker-compose.yml").read_text()
    deploy_vars = set(re.findall(r"\$\{(DEPLOY_[A-Z0-9_]+)", compose_text))
    assert deploy_vars and deploy_vars <= listed


def test_env_example_active_lines_load_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from spillwatch.settings import Settings

    active = composefile.read_env_file(DEPLOY / ".env.example")
    assert active, "the example should set at least the partitions"
    for k in list(os.environ):
        if k.startswith("SPILLWATCH_"):
            monkeypatch.delenv(k)
    for k, v in active.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.kafka.partitions == int(active["SPILLWATCH_KAFKA__PARTITIONS"])
    assert s.log_format == "json"


def test_setting_walk_finds_nested_fields() -> None:
    names = gen_env.setting_env_names()
    for expected in (
        "SPILLWATCH_KAFKA__BOOTSTRAP",
        "SPILLWATCH_KAFKA__PROFILE",
        "SPILLWATCH_REDIS__URL",
        "SPILLWATCH_WORKER__METRICS_PORT",
        "SPILLWATCH_ALERTING__WEBHOOK_SECRET",
        "SPILLWATCH_LOG_LEVEL",
    ):
        assert expected in names
    assert "SPILLWATCH_KAFKA" not in names  # sections are walked, not listed as leaves


def test_cameras_example_is_a_valid_config(monkeypatch: pytest.MonkeyPatch, services: dict[str, Any]) -> None:
    from spillwatch.settings import Settings

    monkeypatch.setenv("SPILLWATCH_CONFIG", str(DEPLOY / "cameras.example.yml"))
    s = Settings()
    ids = [c.id for c in s.cameras]
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
    assert any(c.zone for c in s.cameras)
    assert any(c.source.startswith("rtsp://") for c in s.cameras)
    # file sources are paths inside the producer container: they must lie in a mount that exists
    producer = services["producer"]
    for cam in s.cameras:
        if cam.source.startswith("/"):
            host = producer.host_path(cam.source)
            assert host is not None and host.exists(), f"{cam.id}: {cam.source} is not mounted into the producer"


# ------------------------------------------------------------------ Dockerfile, .dockerignore


def _stages(text: str) -> list[tuple[str, list[str]]]:
    """[(FROM line, [instructions])] with line continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[tuple[str, list[str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def test_dockerfile_is_multi_stage_without_torch_and_non_root() -> None:
    stages = _stages((DEPLOY / "Dockerfile").read_text())
    assert len(stages) >= 2
    builder_from, builder = stages[0]
    runtime_from, runtime = stages[-1]
    assert " AS builder" in builder_from and " AS runtime" in runtime_from
    pip = [i for i in builder if i.startswith("RUN") and "pip install -c deploy/constraints.txt ." in i]
    assert pip and not any("[train]" in i or "torch==" in i for i in builder)
    assert "COPY deploy/constraints.txt ./deploy/constraints.txt" in builder  # the image gets CI's versions
    assert not any("torch" in i.lower() and i.startswith("RUN") and "import torch" not in i for i in runtime)
    assert not any(i.startswith("RUN") and "pip install" in i for i in runtime), "runtime gets the built venv only"
    assert any(i.startswith("COPY --from=builder /opt/venv") for i in runtime)
    assert any(i.startswith("COPY models/") for i in runtime)
    users = [i.split()[1] for i in runtime if i.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(i.startswith("HEALTHCHECK ") and "healthcheck.py" in i for i in runtime)


def test_dockerfile_env_names_real_settings() -> None:
    env = {k: v for k, v in composefile.dockerfile_env().items() if k.startswith("SPILLWATCH_")}
    assert "SPILLWATCH_WORKER__MODEL_PATH" in env  # the package's default path is not inside the image
    assert env["SPILLWATCH_WORKER__MODEL_PATH"].startswith("/opt/spillwatch/models/")
    unknown = set(env) - gen_env.setting_env_names()
    assert not unknown, f"Dockerfile ENV sets variables no setting reads: {sorted(unknown)}"


def test_runtime_dependencies_have_no_torch() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]
    assert "torch" not in deps and "torchvision" not in deps
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["train"])


def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and not any(c in version for c in "<>=!~,; "), f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_within_its_range_and_installed_at_the_pin() -> None:
    """deploy/constraints.txt (``make lock``) pins every package, each inside pyproject.toml's range, and
    `make setup`/`setup-dev` and the image install with it: CI and a fresh machine get the versions the
    tests passed with, not whatever was released since."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for r in reqs:
        name = canonicalize_name(r.name)
        assert name in pins, f"{r.name} is not pinned: run `make lock`"
        assert r.specifier.contains(pins[name], prereleases=True), f"{r.name}=={pins[name]} is outside pyproject's {r}"
    # the environment the tests run in is the pinned one (a package installed at another version means
    # the tests did not test what ships)
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        assert installed.split("+")[0] == version, f"{name} {installed} installed, {version} pinned: run `make setup-dev`"
    makefile = (REPO / "Makefile").read_text()
    installs = [x.strip() for x in makefile.splitlines() if "$(BIN)/pip install" in x and "--upgrade pip" not in x]
    assert installs and all("-c $(CONSTRAINTS)" in x for x in installs), installs
    assert "CONSTRAINTS := deploy/constraints.txt" in makefile


def test_device_wheels_are_the_pinned_versions() -> None:
    """devstack/device/wheels.txt (what a lent device machine lacks for the pipeline bench) carries the
    versions CI tests, so a figure measured there is of the same code and libraries."""
    from packaging.utils import canonicalize_name

    pins = _pins()
    wheels = [x for x in (REPO / "devstack" / "device" / "wheels.txt").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert wheels
    for line in wheels:
        name, _, version = line.partition("==")
        assert pins.get(canonicalize_name(name)) == version, f"{line}: deploy/constraints.txt pins {pins.get(canonicalize_name(name))}"


def _ignored(path: str, patterns: list[str]) -> bool:
    import fnmatch

    ignored = False
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.rstrip("/")
        cands = {pat, pat.replace("**/", "")}
        if any(fnmatch.fnmatch(path, c) or path.startswith(c + "/") for c in cands):
            ignored = not neg
    return ignored


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv/bin/python", "var/stack/state.json", "tests/test_deploy.py", ".git/HEAD", "runs/x", ".env"):
        assert _ignored(path, patterns), f"{path} would be sent to the build context"
    stages = _stages((DEPLOY / "Dockerfile").read_text())
    for _, instrs in stages:
        for i in instrs:
            if i.startswith("COPY ") and "--from" not in i:
                for src in i.split()[1:-1]:
                    assert not _ignored(src.rstrip("/"), patterns), f"{src} is COPYed but ignored"
                    if src.rstrip("/") == "models":
                        continue  # the model itself: test_image_ships_the_model
                    assert (REPO / src).exists(), f"Dockerfile COPYs {src}, which is not in the repository"


def test_image_ships_the_model() -> None:
    """The image bakes models/ in; the workers load SPILLWATCH_WORKER__MODEL_PATH from it."""
    env = composefile.dockerfile_env()
    name = Path(env["SPILLWATCH_WORKER__MODEL_PATH"]).name
    model = REPO / "models" / name
    card = model.with_suffix(".card.json")
    if not model.exists():
        pytest.skip(f"models/{name} is not in the repository yet (the classifier's deliverable): the image "
                    "build fails at `COPY models/` and workers have no model until it lands")
    assert card.exists(), f"{card.name} must sit beside the model"
    import hashlib

    assert json.loads(card.read_text())["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert not _ignored(f"models/{name}", patterns) and not _ignored(f"models/{card.name}", patterns)
