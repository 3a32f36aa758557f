"""CLI: ``spillwatch stack up|down|status`` and ``spillwatch demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

DEFAULT_STATE_DIR = Path("var/stack")
STATE_DIR_HELP = "pid/state and log files"


def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def up(
    broker_port: int = typer.Option(None, help="default: the port of kafka.bootstrap (19092)"),
    redis_port: int = typer.Option(None, help="default: the port of redis.url (16379)"),
    redis_persist: bool = typer.Option(False, help="Redis append-only file under the state dir"),
    partitions: int = typer.Option(None, help="frames/classifications partitions (kafka.partitions)"),
    state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help=STATE_DIR_HELP),
) -> None:
    """Start the broker and Redis in the background on loopback, create the topics."""
    from devstack.stack import LocalStack, StackError, StackState, port_of
    from spillwatch.kafka import create_topics
    from spillwatch.settings import LOCAL_BROKER_PORT, LOCAL_REDIS_PORT, get_settings

    settings = get_settings()
    sf = _state_file(state_dir)
    old = StackState.load(sf)
    if old is not None and LocalStack.from_state(old).health()["ok"]:
        typer.echo(f"stack already running: broker {old.host}:{old.broker_port}, redis port {old.redis_port}")
        raise typer.Exit(0)
    bport = broker_port or port_of(settings.kafka.bootstrap, LOCAL_BROKER_PORT)
    rport = redis_port or port_of(settings.redis.url, LOCAL_REDIS_PORT)
    stack = LocalStack(bport, rport, work_dir=state_dir, detached=True, redis_persist=redis_persist)
    try:
        stack.start()
        stack.state().save(sf)
        s = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap": stack.bootstrap})})
        result = create_topics(s, partitions=partitions)
    except (StackError, TimeoutError, OSError) as exc:
        stack.stop()
        sf.unlink(missing_ok=True)
        typer.echo(f"stack up failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    created = sum(1 for v in result.values() if v == "created")
    typer.echo(
        f"stack up: broker {stack.bootstrap} (pid {stack.broker.pid if stack.broker else '-'}), "
        f"redis {stack.redis_url} (pid {stack.redis.pid if stack.redis else '-'}); "
        f"{created} topics created, {len(result) - created} existed; logs in {state_dir}"
    )


def down(state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help=STATE_DIR_HELP)) -> None:
    """Stop what ``stack up`` started."""
    from devstack.stack import LocalStack, StackState

    sf = _state_file(state_dir)
    st = StackState.load(sf)
    if st is None:
        typer.echo("stack not running (no state file)")
        return
    LocalStack.from_state(st).stop()
    sf.unlink(missing_ok=True)
    typer.echo("stack down")


def status(
    state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help=STATE_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the health as JSON"),
) -> None:
    """Health of the stack (exit code 1 when not healthy)."""
    from devstack.stack import LocalStack, StackState

    st = StackState.load(_state_file(state_dir))
    if st is None:
        health: dict[str, object] = {"ok": False, "error": "stack not running (no state file): start it with `spillwatch stack up`"}
    else:
        health = LocalStack.from_state(st).health()
        if not health.get("ok"):
            health["error"] = "stack not healthy: restart it with `spillwatch stack down && spillwatch stack up`"
    if as_json:
        typer.echo(json.dumps(health, indent=2))
    else:
        for name in ("broker", "redis"):
            h = health.get(name)
            if isinstance(h, dict):
                state = "ready" if h["ready"] else ("running, not ready" if h["running"] else "down")
                typer.echo(f"{name:7s} {h['address']:28s} pid {h['pid']}  {state}")
        if "error" in health:
            typer.echo(str(health["error"]), err=True)
    raise typer.Exit(0 if health.get("ok") else 1)


def demo(
    out: Path = typer.Option(None, "--out", help="write the JSON report here [default: var/demo-report.json]"),
    workers: int = typer.Option(1, "--workers", min=1, max=8, help="classifier workers in the group"),
    speed: float = typer.Option(
        1.0, "--speed", min=0.1, max=10.0, help="play the clips at X times real time (the demo runs on the wall clock: no 0)"
    ),
    linger: float = typer.Option(0.0, "--linger", min=0.0, help="keep everything (the web console) up S seconds after the report"),
    old_report: Path = typer.Option(None, "--report", hidden=True, help="deprecated: --out"),
) -> None:
    """Run the whole pipeline and the web console on the embedded stack and the bundled clips; stop when they end."""
    from devstack.demo import run_demo
    from spillwatch.cli_options import renamed

    out = renamed(out, old_report, new="--out", old="--report") or Path("var/demo-report.json")
    rep = run_demo(out, workers=workers, speed=speed, linger_s=linger)
    spill = rep["cameras"].get("demo-spill", {})
    clean = rep["cameras"].get("demo-clean", {})
    ok = bool(spill.get("pages")) and not clean.get("pages")
    if not ok:
        typer.echo("demo: unexpected outcome (the spill clip should page, the clean clip should not)", err=True)
        raise typer.Exit(1)


def bench_faults(
    out: Path = typer.Option(Path("var/bench/faults.json"), "--out", help="write the JSON result here"),
    only: list[str] = typer.Option(None, "--only", help="run only these scenarios (repeatable; see --list)"),
    speed: float = typer.Option(10.0, "--speed", min=1.0, max=100.0,
                                help="divide webhook outages and alerting's backoff/lease/escalation times by this"),
    model: Path = typer.Option(None, "--model", help="ONNX model (default: worker.model_path's default)"),
    list_: bool = typer.Option(False, "--list", help="list the scenarios and exit"),
) -> None:
    """Fault and hostile-input scenarios on the embedded stack: prints scenario, confirmed
    incidents, pages, lost, duplicate, stalled seconds (a table) and writes JSON (--out)."""
    from devstack.faults import SCENARIOS, run_faults

    if list_:
        for name in SCENARIOS:
            typer.echo(name)
        return
    result = run_faults(out, only=only or None, speed=speed, model=model)
    if not all(r["ok"] for r in result["rows"]):
        raise typer.Exit(1)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    stack = groups["stack"]
    stack.command("up")(up)
    stack.command("down")(down)
    stack.command("status")(status)
    app.command("demo")(demo)
    groups["bench"].command("faults")(bench_faults)
