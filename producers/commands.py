"""CLI: ``spillwatch produce``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _play_speed(speed: float | None, fast: bool, realtime: bool) -> float | None:
    """``--speed X`` (0: as fast as possible) -> the runner's speed (None: as fast as possible);
    ``--fast`` / ``--realtime`` are the old spellings of ``--speed 0`` / ``--speed 1``."""
    from spillwatch.cli_options import warn_deprecated

    if fast:
        warn_deprecated("--speed 0", "--fast")
        return None
    if realtime:
        warn_deprecated("--speed 1", "--realtime")
    speed = 1.0 if speed is None else speed
    return speed if speed > 0 else None


def _selected_cameras(settings: Any, camera: list[str] | None) -> list[Any]:
    cams = [c for c in settings.cameras if c.enabled]
    if camera:
        unknown = set(camera) - {c.id for c in cams}
        if unknown:
            typer.echo(f"unknown camera ids: {sorted(unknown)}", err=True)
            raise typer.Exit(2)
        cams = [c for c in cams if c.id in set(camera)]
    if not cams:
        typer.echo("no cameras configured (cameras: in the config file)", err=True)
        raise typer.Exit(2)
    return cams


def _shard_of(cams: list[Any], shard: str | None) -> list[Any]:
    """This replica's share of the cameras (``--shard INDEX/COUNT``, producers/sharding.py)."""
    if not shard:
        return cams
    from producers.sharding import cameras_for, parse_shard

    try:
        mine = parse_shard(shard)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    return cameras_for(cams, mine)


def _idle(settings: Any, shard: str | None, stop: Any) -> None:
    """More replicas than cameras: stay up (a replica that exits would be restarted forever)."""
    from spillwatch.logs import get_logger
    from spillwatch.metrics import start_metrics_server

    get_logger("producers").warning("no cameras in this shard; idle", shard=shard)
    start_metrics_server(settings.producer.metrics_port)
    stop.wait()


def produce(
    config: Path = typer.Option(None, "--config", help="YAML config with the cameras (else SPILLWATCH_CONFIG)"),
    camera: list[str] = typer.Option(None, "--camera", help="only these camera ids (repeatable)"),
    shard: str = typer.Option(
        None, "--shard", help="INDEX/COUNT: serve only this replica's share of the cameras (producers/sharding.py)"
    ),
    max_frames: int = typer.Option(None, "--max-frames", min=1, help="stop each camera after N frames"),
    speed: float = typer.Option(None, "--speed", min=0.0, help="play files at X times real time; 0 = as fast as possible [default: 1]"),
    preload: bool = typer.Option(False, "--preload", help="decode video files once, play from memory (many cameras)"),
    out: Path | None = typer.Option(None, "--out", help="write per-camera counts (JSON) here at the end"),
    wait: float = typer.Option(60.0, "--wait", help="seconds to wait for the broker at start-up"),
    old_fast: bool = typer.Option(False, "--fast", hidden=True, help="deprecated: --speed 0"),
    old_realtime: bool = typer.Option(False, "--realtime", hidden=True, help="deprecated: --speed 1"),
    old_stats_json: Path = typer.Option(None, "--stats-json", hidden=True, help="deprecated: --out"),
) -> None:
    """Publish the configured cameras' frames to Kafka until finite sources end (or SIGTERM/SIGINT)."""
    import signal
    import threading

    from producers.runner import run_cameras
    from spillwatch.cli_options import renamed
    from spillwatch.readiness import require
    from spillwatch.settings import get_settings, load_settings

    play_speed = _play_speed(speed, old_fast, old_realtime)
    out = renamed(out, old_stats_json, new="--out", old="--stats-json")
    settings = load_settings(config) if config else get_settings()
    cams = _shard_of(_selected_cameras(settings, camera), shard)
    require(settings, kafka=True, wait_s=wait)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not cams:
            _idle(settings, shard, stop)
            return
        stats = run_cameras(settings, cams, stop, speed=play_speed, max_frames=max_frames, preload=preload)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    counts = {cid: st.as_dict() for cid, st in stats.items()}
    for cid, st in counts.items():
        dropped = sum(st["dropped"].values())
        typer.echo(f"{cid}: sampled {st['sampled']}, published {st['published']}, dropped {dropped} ({st['ended']})")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(counts, indent=2))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("produce")(produce)
