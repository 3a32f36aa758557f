"""CLI: ``spillwatch produce``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    @app.command("produce")
    def produce(
        config: Path = typer.Option(None, "--config", help="YAML config with the cameras (else SPILLWATCH_CONFIG)"),
        camera: list[str] = typer.Option(None, "--camera", help="only these camera ids (repeatable)"),
        shard: str = typer.Option(
            None, "--shard", help="INDEX/COUNT: serve only this replica's share of the cameras (producers/sharding.py)"
        ),
        max_frames: int = typer.Option(None, "--max-frames", min=1, help="stop each camera after N frames"),
        realtime: bool = typer.Option(True, "--realtime/--fast", help="files at real-time pace, or as fast as possible"),
        speed: float = typer.Option(1.0, "--speed", min=0.01, help="with --realtime: play files at this multiple"),
        preload: bool = typer.Option(False, "--preload", help="decode video files once, play from memory (many cameras)"),
        stats_json: Path = typer.Option(None, "--stats-json", help="write per-camera counts here at the end"),
    ) -> None:
        """Publish the configured cameras' frames to Kafka until finite sources end (or SIGTERM/SIGINT)."""
        import signal
        import threading

        from producers.runner import run_cameras
        from spillwatch.settings import get_settings, load_settings

        settings = load_settings(config) if config else get_settings()
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
        if shard:
            from producers.sharding import cameras_for, parse_shard

            try:
                mine = parse_shard(shard)
            except ValueError as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(2) from exc
            cams = cameras_for(cams, mine)
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            stop.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            if not cams:  # more replicas than cameras: stay up (a replica that exits is restarted forever)
                from spillwatch.logs import get_logger
                from spillwatch.metrics import start_metrics_server

                get_logger("producers").warning("no cameras in this shard; idle", shard=shard)
                start_metrics_server(settings.producer.metrics_port)
                stop.wait()
                return
            stats = run_cameras(
                settings, cams, stop, speed=speed if realtime else None, max_frames=max_frames, preload=preload
            )
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        out = {cid: st.as_dict() for cid, st in stats.items()}
        for cid, st in out.items():
            dropped = sum(st["dropped"].values())
            typer.echo(f"{cid}: sampled {st['sampled']}, published {st['published']}, dropped {dropped} ({st['ended']})")
        if stats_json:
            stats_json.write_text(json.dumps(out, indent=2))
