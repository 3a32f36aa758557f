"""CLI: ``spillwatch worker`` (classifier role), ``spillwatch aggregator``, ``spillwatch bench pipeline``.

Each service command starts its Faust worker in-process (no ``faust`` CLI): web server off unless
``worker.web_port`` is set (then that port, one per worker process), Prometheus metrics on the
role's ``metrics_port``, SIGTERM/SIGINT stop it cleanly (the Faust worker commits offsets of
what was processed and leaves the group). Scale the classifier by starting more ``spillwatch worker``
processes: they join the same consumer group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def run_role(role: str, *, loglevel: str = "WARNING", wait_s: float = 60.0) -> None:
    """Wait (up to ``wait_s`` each) for the broker and Redis, create the topics if missing, then run
    the role's Faust worker until SIGTERM/SIGINT. A broker or Redis that does not answer in time is
    one line naming the fix (exit 1); a missing or broken model is a configuration error (exit 2)."""
    import asyncio

    from faust.worker import Worker

    from processors.app import create_app, worker_id
    from spillwatch.kafka import create_topics
    from spillwatch.logs import get_logger
    from spillwatch.metrics import start_metrics_server
    from spillwatch.model import ModelError
    from spillwatch.readiness import require
    from spillwatch.settings import ConfigError, get_settings, setting_source

    settings = get_settings()
    log = get_logger(f"processors.{role}", worker=worker_id())
    port = settings.worker.metrics_port if role == "classifier" else settings.aggregator.metrics_port
    require(settings, kafka=True, redis=True, wait_s=wait_s)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app = create_app(settings, role)  # type: ignore[arg-type]
    except ModelError as exc:
        raise ConfigError(f"worker.model_path ({setting_source('worker.model_path', settings.config)}): {exc}") from None
    create_topics(settings, timeout_s=wait_s)  # idempotent
    start_metrics_server(port)
    log.info("starting", role=role, group=app.conf.id, bootstrap=settings.kafka.bootstrap, metrics_port=port,
             web=app.conf.web_enabled)
    worker = Worker(
        app,
        loop=loop,
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.spinner = None  # no terminal spinner escapes in service logs
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        log.info("stopped", role=role, code=exc.code)
        raise


FAUST_LOGLEVEL_HELP = "log level of Faust/aiokafka internals"
WAIT_HELP = "seconds to wait for the broker and Redis at start-up"


def worker_cmd(
    faust_loglevel: str = typer.Option("WARNING", help=FAUST_LOGLEVEL_HELP),
    wait: float = typer.Option(60.0, "--wait", help=WAIT_HELP),
) -> None:
    """Run a classifier worker (frames -> classifications). Start more to scale out."""
    run_role("classifier", loglevel=faust_loglevel, wait_s=wait)


def aggregator_cmd(
    faust_loglevel: str = typer.Option("WARNING", help=FAUST_LOGLEVEL_HELP),
    wait: float = typer.Option(60.0, "--wait", help=WAIT_HELP),
) -> None:
    """Run the aggregator (classifications -> incident state in Redis -> spill alerts)."""
    run_role("aggregator", loglevel=faust_loglevel, wait_s=wait)


def bench_pipeline(
    cameras: int = typer.Option(20, help="simulated cameras"),
    fps: float = typer.Option(2.0, help="frames per second per camera"),
    seconds: float = typer.Option(30.0, help="duration of the latency run"),
    workers: str = typer.Option("1,2", help="classifier worker counts to measure"),
    width: int = typer.Option(480, help="frame width (producers downsize to 480 by default)"),
    throughput_frames: int = typer.Option(1500, help="frames in each saturation (frames/s) run"),
    out: Path = typer.Option(Path("var/bench/pipeline.json"), "--out", help="write the JSON results here"),
    local: bool = typer.Option(True, "--local/--no-local", help="start a private broker+Redis (--no-local: use the configured ones)"),
    model: Path = typer.Option(None, help="ONNX model (default: worker.model_path)"),
    old_embedded: bool = typer.Option(None, "--embedded/--no-embedded", hidden=True, help="deprecated: --local/--no-local"),
    scene: str = typer.Option(None, help="static | busy | mixed (default: today's bench, every camera plays a clip)"),
    gating: bool = typer.Option(None, "--gating/--no-gating", help="force change gating on or off (default: gating.enabled)"),
    ratio_segments: int = typer.Option(0, min=0, help="also measure one worker against the model-only ceiling in turns: "
                                                       "the throughput burst in this many segments, a ceiling pass before "
                                                       "each and after the last (0: off; 6 is a good start)"),
) -> None:
    """Throughput and latency of the pipeline through the real broker (prints a table, writes JSON)."""
    from processors.bench import run_bench
    from spillwatch.cli_options import warn_deprecated

    if old_embedded is not None:
        warn_deprecated("--local/--no-local", "--embedded/--no-embedded")
        local = old_embedded
    if not local:
        from spillwatch.readiness import require
        from spillwatch.settings import get_settings

        require(get_settings(), kafka=True, redis=True, wait_s=5, local_option=True)
    counts = [int(x) for x in workers.split(",") if x.strip()]
    result: dict[str, Any] = run_bench(
        cameras=cameras, fps=fps, seconds=seconds, worker_counts=counts, width=width,
        throughput_frames=throughput_frames, out=out, embedded=local, model=model, scene=scene, gating=gating,
        ratio_segments=ratio_segments,
    )
    typer.echo(f"wrote {out}" if result else "no result")


def bench_redis(
    # 100 x 60: the aggregator's backlog (about three times the frames of a scene) takes it seconds to drain, not a
    # fraction of one (20 x 30 drained in ~0.4 s once an aggregator decided ~4,000 a second: too short to time)
    cameras: int = typer.Option(100, help="simulated cameras"),
    frames_per_camera: int = typer.Option(60, help="frames per camera and scene (2 fps capture spacing)"),
    out: Path = typer.Option(Path("var/bench/redis-ops.json"), "--out", help="JSON results"),
) -> None:
    """Redis commands per frame (clean and spill scenes) and one aggregator's decisions/s, measured."""
    from processors.redis_load import run

    run(cameras=cameras, per_camera=frames_per_camera, out=out)
    typer.echo(f"wrote {out}")


def aggregate_offline(
    classifications: Path = typer.Argument(..., help="classifications, one JSON per line (as the topic carries them)"),
    out: Path = typer.Option(..., "--out", help="write the alerts (JSON list) here"),
    without_suppression: bool = typer.Option(False, "--without-suppression", help="ignore the frames' learned-suppression marks"),
    model: Path = typer.Option(None, "--model", help="model whose card gives the thresholds (default: worker.model_path)"),
) -> None:
    """The aggregator's decisions recomputed offline from recorded classifications (no broker, no Redis)."""
    from processors.app import model_thresholds
    from processors.offline import confirm_offline, read_classifications, write_alerts
    from spillwatch.settings import get_settings

    settings = get_settings()
    if model is not None:
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"model_path": model})})
    try:
        rows = read_classifications(classifications)
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot read {classifications}: {exc}", err=True)
        raise typer.Exit(2) from exc
    threshold, map_threshold = model_thresholds(settings)
    alerts = confirm_offline(rows, settings, model_threshold=threshold, map_threshold=map_threshold,
                             honour_suppression=not without_suppression)
    write_alerts(alerts, out)
    confirmed = sum(1 for a in alerts if a.state.value == "confirmed")
    typer.echo(f"{len(rows)} classification(s) -> {confirmed} incident(s){' without suppression' if without_suppression else ''}; {out}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("worker")(worker_cmd)
    app.command("aggregator")(aggregator_cmd)
    app.command("aggregate")(aggregate_offline)
    groups["bench"].command("pipeline")(bench_pipeline)
    groups["bench"].command("redis")(bench_redis)
