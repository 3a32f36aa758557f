"""Producer sharding (`spillwatch produce --shard INDEX/COUNT`, producers/sharding.py): every camera is
served by exactly one replica, adding cameras or replicas moves as little as possible, and the CLI
applies it (and keeps an empty shard up instead of crash-looping)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from producers.sharding import Shard, cameras_for, parse_shard, shard_of
from spillwatch.settings import CameraConfig
from tests.helpers.deploy import free_port

REPO = Path(__file__).resolve().parent.parent


def _ids(n: int, site_cams: int = 20) -> list[str]:
    return [f"site-{i // site_cams:03d}-cam-{i % site_cams:02d}" for i in range(n)]


def _cams(ids: list[str]) -> list[CameraConfig]:
    return [CameraConfig(id=i, source=f"rtsp://cam.invalid/{i}") for i in ids]


def test_every_camera_is_served_by_exactly_one_shard() -> None:
    cams = _cams(_ids(500))
    for count in (1, 2, 3, 7, 16):
        served = [c.id for i in range(count) for c in cameras_for(cams, Shard(i, count))]
        assert sorted(served) == sorted(c.id for c in cams), count


def test_shards_share_the_load() -> None:
    ids = _ids(1000)
    for count in (2, 4, 8):
        sizes = Counter(shard_of(i, count) for i in ids).values()
        assert len(sizes) == count
        assert max(sizes) <= 1.25 * 1000 / count, (count, sorted(sizes))


def test_adding_a_camera_moves_no_other_camera() -> None:
    ids = _ids(300)
    before = {i: shard_of(i, 5) for i in ids}
    after = {i: shard_of(i, 5) for i in [*ids, "site-999-new-camera"]}
    assert {i: after[i] for i in ids} == before


def test_adding_a_replica_moves_only_cameras_to_the_new_shard() -> None:
    ids = _ids(1000)
    for count in (1, 3, 8):
        moved = [i for i in ids if shard_of(i, count) != shard_of(i, count + 1)]
        assert all(shard_of(i, count + 1) == count for i in moved), count
        assert 0 < len(moved) < 2 * len(ids) / (count + 1), (count, len(moved))


def test_the_mapping_is_stable_across_processes() -> None:
    """No dependence on Python's per-process hash seed: every replica computes the same split."""
    code = "from producers.sharding import shard_of; print([shard_of(f'cam-{i}', 4) for i in range(50)])"
    runs = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str([shard_of(f"cam-{i}", 4) for i in range(50)])


@pytest.mark.parametrize("text", ["", "1", "4/4", "-1/4", "a/b", "1/0", "1/2/3"])
def test_bad_shard_arguments_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_parse_shard() -> None:
    assert parse_shard(" 3/8 ") == Shard(3, 8)
    assert str(parse_shard("0/1")) == "0/1"


def _produce(tmp_path: Path, shard: str, metrics_port: int | None = None, bootstrap: str = "127.0.0.1:1") -> subprocess.Popen[str]:
    cams = {"cameras": [{"id": i, "source": str(tmp_path / "missing.mp4")} for i in _ids(6)]}
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump(cams))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPILLWATCH_")}
    env.update(SPILLWATCH_CONFIG=str(cfg), SPILLWATCH_KAFKA__BOOTSTRAP=bootstrap, SPILLWATCH_KAFKA__PROFILE="local",
               SPILLWATCH_LOG_FORMAT="json")
    if metrics_port:
        env["SPILLWATCH_PRODUCER__METRICS_PORT"] = str(metrics_port)
    return subprocess.Popen([sys.executable, "-m", "spillwatch.cli", "produce", "--shard", shard], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cli_refuses_a_bad_shard(tmp_path: Path) -> None:
    p = _produce(tmp_path, "2/2")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 2 and "INDEX < COUNT" in out


@pytest.mark.integration
def test_an_empty_shard_stays_up_and_serves_metrics(local_stack: Any, tmp_path: Path) -> None:
    """Six cameras over 50 shards: some shard is empty; that replica idles (a StatefulSet would
    restart an exiting one forever) with its metrics endpoint up, and stops on SIGTERM. Like every
    producer it first waits for the broker (spillwatch/readiness.py), so a broker runs here."""
    ids = _ids(6)
    empty = next(i for i in range(50) if not any(shard_of(c, 50) == i for c in ids))
    port = free_port()
    p = _produce(tmp_path, f"{empty}/50", port, bootstrap=local_stack.bootstrap)
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.2)
        assert b"spillwatch_frames_published_total" in body, p.stdout.read() if p.poll() is not None else "no answer"
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0 and "no cameras in this shard" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
