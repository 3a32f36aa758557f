"""CLI: ``spillwatch stack up|down|status`` and ``spillwatch demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

DEFAULT_STATE_DIR = Path("var/stack")


def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    stack = groups["stack"]

    @stack.command("up")
    def up(
        broker_port: int = typer.Option(None, help="default: the port of kafka.bootstrap (19092)"),
        redis_port: int = typer.Option(None, help="default: the port of redis.url (16379)"),
        redis_persist: bool = typer.Option(False, help="Redis append-only file under the state dir"),
        partitions: int = typer.Option(None, help="frames/classifications partitions (kafka.partitions)"),
        state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="pid/state and log files"),
    ) -> None:
        """Start the broker and Redis in the background on loopback, create the topics."""
        from spillwatch.kafka import create_topics
        from spillwatch.settings import LOCAL_BROKER_PORT, LOCAL_REDIS_PORT, get_settings
        from devstack.stack import LocalStack, StackError, StackState, port_of

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
            s = settings.model_copy(
                update={"kafka": settings.kafka.model_copy(update={"bootstrap": stack.bootstrap})}
            )
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

    @stack.command("down")
    def down(state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="pid/state and log files")) -> None:
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

    @stack.command("status")
    def status(
        state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="pid/state and log files"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Health of the stack (exit code 1 when not healthy)."""
        from devstack.stack import LocalStack, StackState

        st = StackState.load(_state_file(state_dir))
        if st is None:
            health: dict[str, object] = {"ok": False, "error": "not running (no state file)"}
        else:
            health = LocalStack.from_state(st).health()
        if as_json:
            typer.echo(json.dumps(health, indent=2))
        else:
            for name in ("broker", "redis"):
                h = health.get(name)
                if isinstance(h, dict):
                    state = "ready" if h["ready"] else ("running, not ready" if h["running"] else "down")
                    typer.echo(f"{name:7s} {h['address']:28s} pid {h['pid']}  {state}")
            if "error" in health:
                typer.echo(str(health["error"]))
        raise typer.Exit(0 if health.get("ok") else 1)

    @app.command("demo")
    def demo(
        report: Path = typer.Option(Path("var/demo-report.json"), "--report", help="write the JSON report here"),
        workers: int = typer.Option(1, "--workers", min=1, max=8, help="classifier workers in the group"),
        speed: float = typer.Option(1.0, "--speed", min=0.1, max=10.0, help="play the clips at this multiple of real time"),
    ) -> None:
        """Run the whole pipeline on the embedded stack and the bundled clips; stop when they end."""
        from devstack.demo import run_demo

        rep = run_demo(report, workers=workers, speed=speed)
        spill = rep["cameras"].get("demo-spill", {})
        clean = rep["cameras"].get("demo-clean", {})
        ok = bool(spill.get("pages")) and not clean.get("pages")
        if not ok:
            typer.echo("demo: unexpected outcome (the spill clip should page, the clean clip should not)", err=True)
            raise typer.Exit(1)

    @groups["bench"].command("faults")
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
