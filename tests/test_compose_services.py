"""The compose services, run outside containers: exactly their commands and environment, on the real
local broker and a real Redis, with a clip flowing through; every /metrics endpoint is scraped and
the counters must move.

What is taken from deploy/ as is:
  * each service's ``command`` from deploy/docker-compose.yml (``spillwatch ...``, run through the
    same ``spillwatch`` console script the image's venv has);
  * its environment, with compose's precedence: the image's ``ENV`` (deploy/Dockerfile) < the env
    file (deploy/.env.example, which a site copies to ../.env) < the service's ``environment:``;
  * its healthcheck command (deploy/healthcheck.py, the file the image has at /opt/spillwatch/);
  * the one-shot topic-init first, then the long-running services, the worker scaled to 2.

What is overridden, and only this (``OVERRIDES`` below): hosts and ports (the local stack instead of
kafka:9092/redis:6379; a free metrics port per process instead of 9100 in every container; the ack
API on loopback), paths that are volumes or mounts in the containers (config file, evidence,
archive, model, the Docker secrets' /run/secrets), the Kafka client profile (``local``: the local broker needs short sessions and no
idempotent producer, see DESIGN.md; sites use ``apache``), and per-test namespaces (topic prefix,
Redis key prefix, archiver group) because other tests share the broker. Files the image bakes in
(models/) map to the repository's copy. In the full-pipeline test the model is the tiny real ONNX
graph of tests/helpers/tiny_model.py, so that the page does not hang on the shipped model's quality (tested
in the classifier's tests); the clip is made here: grey floor, then a red patch the tiny model
scores as a spill. A second test runs the worker with the model the image ships, unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from spillwatch.supervisor import ChildProcess, stop_all
from tests.helpers import consume_all, settled_alerts, settled_pages
from tests.helpers.console import sign_in
from tests.helpers.deploy import (
    CONTAINER_MODEL_DIR,
    DEPLOY,
    REPO,
    SAMPLE_CLIP,
    base_env,
    composefile,
    free_port,
    metric,
    metric_samples,
    spillwatch_executable,
)

pytestmark = pytest.mark.integration

CONTAINER_HEALTHCHECK = "/opt/spillwatch/healthcheck.py"
RED_CAMERA = "deploy-red"
SAMPLE_CAMERA = "deploy-sample"
CONSOLE_PASSWORD = "compose-console-admin"


def dockerfile_env() -> dict[str, str]:
    """SPILLWATCH_* variables the runtime stage of deploy/Dockerfile sets with ENV."""
    return {k: v for k, v in composefile.dockerfile_env().items() if k.startswith("SPILLWATCH_")}


def make_red_clip(path: Path, seconds_clean: float = 3.0, seconds_spill: float = 6.0, fps: float = 10.0) -> None:
    """Grey floor, then a red patch appears and stays (the tiny model's 'spill')."""
    import cv2

    from tests.helpers.tiny_model import frame_image

    w, h = 320, 240
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        for i in range(int((seconds_clean + seconds_spill) * fps)):
            box = (0.1, 0.55, 0.5, 0.95) if i >= seconds_clean * fps else None
            writer.write(frame_image(w, h, box))
    finally:
        writer.release()
    assert path.stat().st_size > 0


@dataclass
class Running:
    child: ChildProcess
    metrics_port: int | None

    @property
    def name(self) -> str:
        return self.child.name

    @property
    def env(self) -> dict[str, str]:
        return self.child.env

    def tail(self) -> str:
        return self.child.log_text()[-3000:]


class ComposeRun:
    """Runs compose services as local processes; stops every one of them at teardown."""

    def __init__(self, workdir: Path, base_env: dict[str, str], overrides: dict[str, str]) -> None:
        self.workdir = workdir
        self.services = composefile.services(composefile.load())
        self.env_file = composefile.read_env_file(DEPLOY / ".env.example")
        self.image_env = dockerfile_env()
        self.base_env = base_env
        self.overrides = overrides
        self.running: list[Running] = []

    def env_for(self, name: str) -> tuple[dict[str, str], int | None]:
        svc = self.services[name]
        env = dict(self.base_env)
        env.update(self.image_env)  # image ENV < env_file < environment (compose precedence)
        env.update(self.env_file)
        env.update(svc.environment)
        for k, v in env.items():  # files the image bakes in (COPY models/) -> the repository's copy
            if v.startswith(CONTAINER_MODEL_DIR + "/"):
                env[k] = str(REPO / "models" / v[len(CONTAINER_MODEL_DIR) + 1 :])
        env.update(self.overrides)
        port = None
        for k in list(env):
            if k.endswith("__METRICS_PORT") and k in svc.environment:
                port = free_port()  # 9100 in every container; one free port per process here
                env[k] = str(port)
        if name == "console":
            env["SPILLWATCH_CONSOLE__HOST"] = "127.0.0.1"  # 0.0.0.0 inside its container
            env["SPILLWATCH_CONSOLE__PORT"] = str(free_port())
            env["SPILLWATCH_CONSOLE__ADMIN_PASSWORD"] = CONSOLE_PASSWORD  # a site sets it in .env (or adds users)
        if svc.secrets:  # the Docker secrets mounted at /run/secrets: the same files, under their targets
            env["SPILLWATCH_SECRETS_DIR"] = str(svc.materialize_secrets(self.workdir / f"secrets-{name}"))
        return env, port

    def start(self, name: str, replica: int = 1) -> Running:
        svc = self.services[name]
        assert svc.command[0] == "spillwatch", svc.command
        env, port = self.env_for(name)
        # the compose environment exactly as deployed (not a settings hand-off): ChildProcess with env
        child = ChildProcess(f"{name}-{replica}", spillwatch_executable() + svc.command[1:], env,
                             self.workdir / f"{name}-{replica}.log")
        child.start(cwd=self.workdir)  # the image's WORKDIR
        r = Running(child, port)
        self.running.append(r)
        return r

    def healthcheck(self, r: Running) -> subprocess.CompletedProcess[str]:
        """The service's compose healthcheck command, with the image path mapped to deploy/."""
        svc = self.services[r.name.rsplit("-", 1)[0]]
        test = svc.spec["healthcheck"]["test"]
        assert test[0] == "CMD" and test[2] == CONTAINER_HEALTHCHECK
        cmd = [sys.executable, str(DEPLOY / "healthcheck.py"), *test[3:]]
        return subprocess.run(cmd, env=r.env, capture_output=True, text=True, timeout=20)

    def settings(self) -> Any:
        """Settings of this run's namespace (for reading its topics and Redis state from the test)."""
        from spillwatch.settings import Settings

        o = self.overrides
        return Settings(
            kafka={"bootstrap": o["SPILLWATCH_KAFKA__BOOTSTRAP"], "profile": "local", "topic_prefix": o["SPILLWATCH_KAFKA__TOPIC_PREFIX"]},
            redis={"url": o["SPILLWATCH_REDIS__URL"], "key_prefix": o["SPILLWATCH_REDIS__KEY_PREFIX"]},
        )

    def stop(self) -> None:
        stop_all([r.child for r in self.running], grace_s=20)


def _overrides(local_stack: Any, tmp_path: Path, config: Path) -> dict[str, str]:
    ns = uuid.uuid4().hex[:8]
    return {
        # hosts: the local stack instead of the compose network
        "SPILLWATCH_KAFKA__BOOTSTRAP": local_stack.bootstrap,
        "SPILLWATCH_REDIS__URL": local_stack.redis_url,
        # client settings for the local broker (short sessions, no idempotent producer)
        "SPILLWATCH_KAFKA__PROFILE": "local",
        # mounts and volumes of the containers
        "SPILLWATCH_CONFIG": str(config),
        "SPILLWATCH_ALERTING__EVIDENCE_DIR": str(tmp_path / "evidence"),
        "SPILLWATCH_ARCHIVE__ROOT": str(tmp_path / "archive"),
        # namespaces: other tests share this broker and Redis
        "SPILLWATCH_KAFKA__TOPIC_PREFIX": f"compose.{ns}.",
        "SPILLWATCH_REDIS__KEY_PREFIX": f"compose:{ns}",
        "SPILLWATCH_ARCHIVE__GROUP_ID": f"compose.{ns}.spillwatch-archiver",
    }


@pytest.fixture()
def compose_run(local_stack: Any, tmp_path: Path) -> Iterator[ComposeRun]:
    """All services; the tiny test model, and a clip it pages on."""
    from tests.helpers.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "model", name="spillwatch")
    clip = tmp_path / "red.mp4"
    make_red_clip(clip)
    cameras = {
        "cameras": [
            {"id": RED_CAMERA, "source": str(clip), "fps": 2},
            {"id": SAMPLE_CAMERA, "source": str(SAMPLE_CLIP), "fps": 2},
        ]
    }
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(cameras))
    workdir = tmp_path / "work"
    workdir.mkdir()
    overrides = _overrides(local_stack, tmp_path, config)
    # the page must not depend on the shipped model's quality: the tiny model pages on the red clip
    overrides["SPILLWATCH_WORKER__MODEL_PATH"] = str(model)
    run = ComposeRun(workdir, base_env(), overrides)
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture()
def shipped_model_run(local_stack: Any, tmp_path: Path) -> Iterator[ComposeRun]:
    """Worker with the model the image ships (models/, as COPYed by the Dockerfile)."""
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"cameras": [{"id": SAMPLE_CAMERA, "source": str(SAMPLE_CLIP), "fps": 2}]}))
    workdir = tmp_path / "work"
    workdir.mkdir()
    run = ComposeRun(workdir, base_env(), _overrides(local_stack, tmp_path, config))
    try:
        yield run
    finally:
        run.stop()


def _wait(pred: Any, timeout_s: float, what: str, logs: list[Running]) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (OSError, ValueError) as exc:
            last = exc
        if last is True or (last and not isinstance(last, Exception)):
            return last
        time.sleep(0.5)
    detail = "\n".join(f"--- {r.name} (rc={r.child.returncode}):\n{r.tail()}" for r in logs)
    raise AssertionError(f"{what}: not within {timeout_s}s (last: {last!r})\n{detail}")


@pytest.mark.slow  # the producer plays the 24 s sample clip in real time, after every service is healthy
@pytest.mark.timeout(300)
@pytest.mark.skipif(not SAMPLE_CLIP.exists(), reason="samples/clips/spill.mp4 is missing")
def test_compose_services_run_as_configured_and_their_metrics_move(compose_run: ComposeRun) -> None:
    from kafka import KafkaConsumer

    run = compose_run
    pipeline = {n for n, s in run.services.items() if s.command[:1] == ["spillwatch"]}
    assert {"topic-init", "producer", "worker", "aggregator", "alerting"} <= pipeline

    # 1. the one-shot: topics with the partitions of the env file (sized for the workers)
    init = run.start("topic-init")
    assert init.child.wait(90) == 0, init.tail()
    partitions = int(run.env_file["SPILLWATCH_KAFKA__PARTITIONS"])
    prefix = run.overrides["SPILLWATCH_KAFKA__TOPIC_PREFIX"]
    consumer = KafkaConsumer(bootstrap_servers=run.overrides["SPILLWATCH_KAFKA__BOOTSTRAP"])
    try:
        assert len(consumer.partitions_for_topic(f"{prefix}frames") or ()) == partitions
        assert len(consumer.partitions_for_topic(f"{prefix}classifications") or ()) == partitions
    finally:
        consumer.close()
    # running it again (every `docker compose up` does) keeps the topics
    again = run.start("topic-init", replica=2)
    assert again.child.wait(90) == 0, again.tail()

    # 2. the long-running services, the worker scaled to two replicas (`--scale worker=2`)
    long_running = [n for n in sorted(pipeline) if run.services[n].long_running and n != "producer"]
    started = [run.start(n) for n in long_running] + [run.start("worker", replica=2)]
    by_name = {r.name: r for r in started}
    workers = [by_name["worker-1"], by_name["worker-2"]]

    # every healthcheck (the compose command) turns healthy
    for r in started:
        _wait(lambda r=r: r.child.running() and run.healthcheck(r).returncode == 0, 60, f"{r.name} healthy", [r])

    # nothing has flowed yet: the counters start at zero
    before = {r.name: metric_samples(r.metrics_port) for r in started if r.metrics_port}
    assert metric(before["worker-1"], "spillwatch_frames_classified_total") == 0
    assert metric(before["alerting-1"], "spillwatch_pages_total") == 0

    # 3. the producer, on the clips; it exits when the (finite) clips end
    producer = run.start("producer")
    _wait(lambda: producer.child.running() and run.healthcheck(producer).returncode == 0, 30, "producer healthy", [producer])
    _wait(
        lambda: metric(metric_samples(producer.metrics_port), "spillwatch_frames_published_total", camera=RED_CAMERA) > 0,
        30,
        "frames published",
        [producer],
    )
    published: dict[str, float] = {}

    def producer_done() -> bool:
        if producer.child.running():
            published.update(
                {
                    cam: metric(metric_samples(producer.metrics_port), "spillwatch_frames_published_total", camera=cam)
                    for cam in (RED_CAMERA, SAMPLE_CAMERA)
                }
            )
            return False
        return True

    _wait(producer_done, 90, "producer finished the clips", [producer])
    assert producer.child.returncode == 0, producer.tail()
    assert published[RED_CAMERA] >= 12 and published[SAMPLE_CAMERA] >= 30, published

    everything = started + [producer]

    # 4. every published frame is classified (by the two workers together)
    def classified(cam: str) -> float:
        return sum(metric(metric_samples(w.metrics_port), "spillwatch_frames_classified_total", camera=cam) for w in workers)

    _wait(lambda: classified(RED_CAMERA) >= published[RED_CAMERA], 60, "red clip classified", everything)
    _wait(lambda: classified(SAMPLE_CAMERA) >= published[SAMPLE_CAMERA], 60, "sample clip classified", everything)
    inferences = sum(metric(metric_samples(w.metrics_port), "spillwatch_inference_seconds_count") for w in workers)
    assert inferences > 0

    # 5. the red clip confirms an incident and alerting pages it (console channel of .env.example)
    agg = by_name["aggregator-1"]
    _wait(
        lambda: metric(metric_samples(agg.metrics_port), "spillwatch_incidents_total", camera=RED_CAMERA, state="confirmed") >= 1,
        60,
        "incident confirmed",
        everything,
    )
    alerting = by_name["alerting-1"]
    channel = yaml.safe_load(run.env_file["SPILLWATCH_ALERTING__CHANNELS"])[0]
    _wait(
        lambda: metric(metric_samples(alerting.metrics_port), "spillwatch_pages_total", channel=channel, outcome="sent", kind="spill") >= 1,
        60,
        "page sent",
        everything,
    )

    def pages_and_confirmed() -> tuple[float, float]:
        pages = metric(metric_samples(alerting.metrics_port), "spillwatch_pages_total", channel=channel, outcome="sent",
                       kind="spill")  # camera-outage pages (the clips end) are counted apart
        return pages, metric(metric_samples(agg.metrics_port), "spillwatch_incidents_total", state="confirmed")

    _wait(lambda: pages_and_confirmed()[0] >= pages_and_confirmed()[1], 30, "every incident paged", everything)

    # the console shows the incident (from spill-alerts) and the cameras' state (from camera-health)
    console = by_name["console-1"]
    admin = sign_in(f"http://127.0.0.1:{console.env['SPILLWATCH_CONSOLE__PORT']}", "admin", CONSOLE_PASSWORD)
    _wait(lambda: any(i["camera_id"] == RED_CAMERA for i in admin.get("/api/incidents").json()["items"]), 30,
          "console lists the incident", [console])
    assert metric(metric_samples(console.metrics_port), "spillwatch_last_frame_timestamp_seconds", camera=RED_CAMERA) > 0
    # settled (positive signal, no sleep): the aggregator has committed every classification with an
    # empty outbox, alerting has committed every alert with an empty page queue: no page can follow
    settled_alerts(run.settings(), timeout_s=60)
    settled_pages(run.settings(), timeout_s=60)
    pages, confirmed = pages_and_confirmed()
    assert pages == confirmed, f"one page per confirmed incident on {channel}: {pages} pages, {confirmed} incidents"

    # 6. the archiver (profile `archive`) keeps frames, at least the high-scoring ones
    if "archiver-1" in by_name:
        arch = by_name["archiver-1"]
        _wait(
            lambda: metric(metric_samples(arch.metrics_port), "spillwatch_frames_archived_total", camera=RED_CAMERA) > 0,
            60,
            "frames archived",
            everything,
        )

    print(
        f"compose services: published {published}, classified "
        f"{ {c: classified(c) for c in (RED_CAMERA, SAMPLE_CAMERA)} }, inference batches {inferences}, "
        f"incidents confirmed {confirmed}, pages sent on {channel} {pages}"
    )

    # every service is still up and healthy after the clip went through
    for r in started:
        assert r.child.running(), f"{r.name} exited:\n{r.tail()}"
        hc = run.healthcheck(r)
        assert hc.returncode == 0, hc.stderr


@pytest.mark.timeout(240)
@pytest.mark.skipif(not SAMPLE_CLIP.exists(), reason="samples/clips/spill.mp4 is missing")
def test_worker_classifies_with_the_model_the_image_ships(shipped_model_run: ComposeRun) -> None:
    """No model override: the worker loads /opt/spillwatch/models/<DEPLOY_MODEL_FILE> (here: the
    repository's models/, which the Dockerfile copies) and every classification names its version."""
    import json

    from spillwatch.events import Classification

    run = shipped_model_run
    init = run.start("topic-init")
    assert init.child.wait(90) == 0, init.tail()
    worker = run.start("worker")
    model_path = Path(worker.env["SPILLWATCH_WORKER__MODEL_PATH"])
    assert model_path.parent == REPO / "models" and model_path.exists(), model_path
    card = json.loads(model_path.with_suffix(".card.json").read_text())
    _wait(lambda: worker.child.running() and run.healthcheck(worker).returncode == 0, 90, "worker healthy", [worker])

    producer = run.start("producer")
    _wait(lambda: not producer.child.running(), 90, "producer finished the clip", [producer, worker])
    assert producer.child.returncode == 0, producer.tail()
    published = 0
    for line in producer.child.log_text().splitlines():
        if line.startswith(f"{SAMPLE_CAMERA}:"):
            published = int(line.split("published")[1].split(",")[0])
    assert published >= 30, producer.tail()

    def classified() -> float:
        return metric(metric_samples(worker.metrics_port), "spillwatch_frames_classified_total", camera=SAMPLE_CAMERA)

    _wait(lambda: classified() >= published, 90, "every frame classified by the shipped model", [worker])
    settings = run.settings()
    records = consume_all(settings, settings.topics.classifications, timeout_s=20, min_count=published)
    versions = {Classification.from_bytes(r.value).model_version for r in records}
    assert versions == {card["version"]}, versions
    print(f"shipped model {card['version']}: {published} frames published, {classified():.0f} classified")
