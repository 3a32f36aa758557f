"""The embedded stack: in-process lifecycle and the daemonised `spillwatch stack` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devstack.stack import LocalStack, StackState, free_port, port_open

pytestmark = [pytest.mark.integration]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(60)
def test_local_stack_lifecycle_and_broker_restart() -> None:
    import redis

    with LocalStack() as stack:
        h = stack.health()
        assert h["ok"] and h["broker"]["ready"] and h["redis"]["ready"]
        pids = [stack.broker.pid, stack.redis.pid]  # type: ignore[union-attr]
        r = redis.Redis.from_url(stack.redis_url)
        r.set("k", "v")
        assert r.get("k") == b"v"
        r.close()
        old_pid = stack.broker.pid  # type: ignore[union-attr]
        stack.restart_broker()
        assert stack.broker.pid != old_pid and stack.health()["broker"]["ready"]  # type: ignore[union-attr]
        pids.append(stack.broker.pid)  # type: ignore[union-attr]
        bport, rport = stack.broker_port, stack.redis_port
    assert not any(_alive(p) for p in pids if p)
    assert not port_open("127.0.0.1", bport) and not port_open("127.0.0.1", rport)


@pytest.mark.timeout(60)
def test_stack_refuses_a_taken_port(local_stack: LocalStack) -> None:
    from devstack.stack import StackError

    with pytest.raises(StackError, match="in use"):
        LocalStack(broker_port=local_stack.broker_port, with_redis=False).start()


@pytest.mark.timeout(90)
def test_stack_up_status_down_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spillwatch import settings as settings_mod
    from spillwatch.cli import app

    monkeypatch.delenv("SPILLWATCH_CONFIG", raising=False)
    settings_mod.get_settings.cache_clear()
    runner = CliRunner()
    bport, rport = free_port(), free_port()
    sd = tmp_path / "stack"
    args = ["--state-dir", str(sd)]
    try:
        res = runner.invoke(app, ["stack", "up", "--broker-port", str(bport), "--redis-port", str(rport), "--partitions", "3", *args])
        assert res.exit_code == 0, res.output
        st = StackState.load(sd / "state.json")
        assert st is not None and st.broker_port == bport and st.redis_port == rport
        res = runner.invoke(app, ["stack", "status", "--json", *args])
        assert res.exit_code == 0, res.output
        health = json.loads(res.output)
        assert health["ok"] and health["broker"]["pid"] == st.broker_pid
        # topics exist with the requested partitions
        monkeypatch.setenv("SPILLWATCH_KAFKA__BOOTSTRAP", f"127.0.0.1:{bport}")
        settings_mod.get_settings.cache_clear()
        from spillwatch.kafka import topic_partitions

        s = settings_mod.get_settings()
        assert topic_partitions(s, s.topics.frames) == 3
        res = runner.invoke(app, ["init-topics", "--wait", "5"])
        lines = [ln.split()[0] for ln in res.output.splitlines() if ln.endswith(("frames", "pages.dlq"))]
        assert res.exit_code == 0 and lines == ["exists", "exists"], res.output
        # a second `up` notices the running stack
        res = runner.invoke(app, ["stack", "up", "--broker-port", str(bport), *args])
        assert res.exit_code == 0 and "already running" in res.output
    finally:
        res = runner.invoke(app, ["stack", "down", *args])
        settings_mod.get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    assert not _alive(st.broker_pid) and not _alive(st.redis_pid)  # type: ignore[arg-type]
    res = runner.invoke(app, ["stack", "status", *args])
    assert res.exit_code == 1
