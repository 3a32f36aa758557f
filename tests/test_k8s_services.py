"""The pods of deploy/k8s/overlays/local, run as processes: each SpillWatch container's exact command,
args and environment from the rendered manifests, on the real local broker and Redis; every probe
of every container must answer 200 at its path.

Taken from the rendered objects as they are: ``command`` + ``args`` (``$(VAR)`` expanded as the
kubelet does, the pod index 0), the environment (the settings ConfigMap and the Secret through
``envFrom``, then the container's ``env``), ``workingDir`` (a fresh folder here, as the emptyDir),
each probe's path, port and headers (the console's readiness probe sends ``Host: localhost``).

Overridden, and only this: hosts (the local stack instead of the kafka/redis Services) and the
``local`` client profile, the container ports (a free port per process instead of 9100/8088 in every
pod; the console listens on loopback here instead of 0.0.0.0), paths that are volumes in the pods
(cameras file, evidence, archive; the model the image bakes in -> the repository's models/),
per-test namespaces (topic prefix, Redis key prefix, archiver group), and the cameras: the
ConfigMap's RTSP examples are replaced by the bundled clip so that nothing leaves this machine.
Each process's peak resident memory must stay below its container's memory limit.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.deploy import (
    CONTAINER_MODEL_DIR,
    REPO,
    SAMPLE_CLIP,
    base_env,
    free_port,
    spillwatch_executable,
)
from tests.helpers.k8s import (
    container_env,
    containers,
    expand,
    port_numbers,
    probes,
    render,
    secret_env,
    settings_env,
    spillwatch_workloads,
)

pytestmark = pytest.mark.integration


@dataclass
class Pod:
    name: str
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]  # container port name -> port here
    probes: list[tuple[str, str, str]]  # (probe kind, path, port name)
    headers: dict[tuple[str, str], dict[str, str]]  # (probe kind, path) -> the probe's httpHeaders
    memory_limit_mib: float
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _start(w: dict[str, Any], objs: list[dict[str, Any]], tmp: Path, overrides: dict[str, str]) -> Pod:
    c = containers(w)[0]
    name = w["metadata"]["name"]
    env = {**base_env(), **settings_env(objs), **secret_env(objs), **container_env(c)}
    for k, v in list(env.items()):
        if v.startswith(CONTAINER_MODEL_DIR + "/"):
            env[k] = str(REPO / "models" / v[len(CONTAINER_MODEL_DIR) + 1 :])
    env.update(overrides)
    ports = port_numbers(c)
    here: dict[str, int] = {}
    for pname, number in ports.items():
        here[pname] = free_port()
        for k, v in list(env.items()):
            if k.startswith("SPILLWATCH_") and k.endswith("_PORT") and v == str(number):
                env[k] = str(here[pname])
    if "SPILLWATCH_CONSOLE__HOST" in env:
        env["SPILLWATCH_CONSOLE__HOST"] = "127.0.0.1"  # 0.0.0.0 in its pod
    args = expand(c["args"], env)
    work = tmp / f"work-{name}"
    work.mkdir()
    log = tmp / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(spillwatch_executable() + args, env=env, cwd=work, stdout=fh, stderr=subprocess.STDOUT)
    found = [(kind, p["httpGet"]["path"], p["httpGet"]["port"]) for kind, p in probes(c)]
    headers = {(kind, p["httpGet"]["path"]): {h["name"]: h["value"] for h in p["httpGet"].get("httpHeaders", [])}
               for kind, p in probes(c)}
    return Pod(name, proc, here, found, headers, _mib(c["resources"]["limits"]["memory"]), log)


def _mib(quantity: str) -> float:
    m = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert m, quantity
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def _peak_rss_mib(pod: Pod) -> float:
    """Peak resident set size of a pod's process, which must still be running (Linux: VmHWM)."""
    status = Path(f"/proc/{pod.proc.pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert m and pod.proc.poll() is None, f"{pod.name} exited ({pod.proc.poll()}):\n{pod.tail()}"
    return int(m.group(1)) / 1024


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


@pytest.mark.timeout(240)
@pytest.mark.skipif(not SAMPLE_CLIP.exists(), reason="samples/clips/spill.mp4 is missing")
def test_local_overlay_pods_run_and_answer_their_probes(local_stack: Any, tmp_path: Path) -> None:
    objs = render("local")
    ns = uuid.uuid4().hex[:8]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"cameras": [{"id": "k8s-sample", "source": str(SAMPLE_CLIP), "fps": 2, "loop": True}]}))
    overrides = {
        "SPILLWATCH_KAFKA__BOOTSTRAP": local_stack.bootstrap,
        "SPILLWATCH_KAFKA__PROFILE": "local",
        "SPILLWATCH_REDIS__URL": local_stack.redis_url,
        "SPILLWATCH_CONFIG": str(config),
        "SPILLWATCH_ALERTING__EVIDENCE_DIR": str(tmp_path / "evidence"),
        "SPILLWATCH_ARCHIVE__ROOT": str(tmp_path / "archive"),
        "SPILLWATCH_KAFKA__TOPIC_PREFIX": f"k8s.{ns}.",
        "SPILLWATCH_REDIS__KEY_PREFIX": f"k8s:{ns}",
        "SPILLWATCH_ARCHIVE__GROUP_ID": f"k8s.{ns}.spillwatch-archiver",
        "SPILLWATCH_KAFKA__REPLICATION_FACTOR": "1",
    }
    workloads = {w["metadata"]["name"]: w for w in spillwatch_workloads(objs)}
    assert {"topic-init", "producer", "worker", "aggregator", "alerting", "archiver", "console"} <= set(workloads)
    pods: list[Pod] = []
    try:
        # the Job first: it must finish with 0
        job = _start(workloads.pop("topic-init"), objs, tmp_path, overrides)
        assert job.proc.wait(120) == 0, job.tail()
        pods = [_start(w, objs, tmp_path, overrides) for w in workloads.values()]
        pending = {(p.name, kind, path, port) for p in pods for kind, path, port in p.probes}
        by_name = {p.name: p for p in pods}
        answered: dict[tuple[str, str, str, str], int] = {}
        deadline = time.monotonic() + 150
        while pending and time.monotonic() < deadline:
            for key in sorted(pending):
                pod = by_name[key[0]]
                assert pod.proc.poll() is None, f"{pod.name} exited ({pod.proc.returncode}):\n{pod.tail()}"
                status, body = _get(f"http://127.0.0.1:{pod.ports[key[3]]}{key[2]}", pod.headers[(key[1], key[2])])
                if status == 200 and (key[2] != "/metrics" or b"spillwatch_" in body):
                    answered[key] = status
                    pending.discard(key)
            time.sleep(0.5)
        detail = "\n".join(f"--- {p.name}:\n{p.tail()}" for p in pods if any(k[0] == p.name for k in pending))
        assert not pending, f"probes never answered 200: {sorted(pending)}\n{detail}"
        assert {k[0] for k in answered} == {"producer", "worker", "aggregator", "alerting", "archiver", "console"}
        assert ("console", "readinessProbe", "/healthz", "http") in answered
        # without the probe's Host header the kubelet would send the pod's IP: refused
        console = by_name["console"]
        assert _get(f"http://127.0.0.1:{console.ports['http']}/healthz", {"Host": "10.244.0.17:8088"})[0] == 400
        peaks = {p.name: _peak_rss_mib(p) for p in pods}
        over = {n: (round(v), by_name[n].memory_limit_mib) for n, v in peaks.items() if v >= by_name[n].memory_limit_mib}
        assert not over, f"peak RSS (MiB) at or above the container's memory limit: {over}"
        print(f"k8s local overlay: {len(pods)} pods, {len(answered)} probes answered 200; peak RSS MiB: "
              + ", ".join(f"{n} {v:.0f}/{by_name[n].memory_limit_mib:.0f}" for n, v in sorted(peaks.items())))
    finally:
        for p in pods:
            p.proc.terminate()  # SIGTERM, as the kubelet
        for p in pods:
            try:
                p.proc.wait(20)
            except subprocess.TimeoutExpired:
                p.proc.kill()
