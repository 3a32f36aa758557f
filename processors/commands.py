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


def run_role(role: str, *, loglevel: str = "WARNING") -> None:
    """Create the topics if missing, then run the role's Faust worker until SIGTERM/SIGINT."""
    import asyncio

    from faust.worker import Worker

    from processors.app import create_app, worker_id
    from spillwatch.kafka import create_topics
    from spillwatch.logs import get_logger
    from spillwatch.metrics import start_metrics_server
    from spillwatch.model import ModelError
    from spillwatch.settings import get_settings

    settings = get_settings()
    log = get_logger(f"processors.{role}", worker=worker_id())
    port = settings.worker.metrics_port if role == "classifier" else settings.aggregator.metrics_port
    start_metrics_server(port)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app = create_app(settings, role)  # type: ignore[arg-type]
    except ModelError as exc:
        log.error("cannot start", role=role, error=str(exc))
        raise typer.Exit(2) from exc
    try:
        create_topics(settings, timeout_s=60)  # idempotent; waits for the broker
    except TimeoutError as exc:
        log.error("broker not reachable", role=role, bootstrap=settings.kafka.bootstrap, error=str(exc))
        raise typer.Exit(3) from exc
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


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    @app.command("worker")
    def worker_cmd(
        faust_loglevel: str = typer.Option("WARNING", help="log level of Faust/aiokafka internals"),
    ) -> None:
        """Run a classifier worker (frames -> classifications). Start more to scale out."""
        run_role("classifier", loglevel=faust_loglevel)

    @app.command("aggregator")
    def aggregator_cmd(
        faust_loglevel: str = typer.Option("WARNING", help="log level of Faust/aiokafka internals"),
    ) -> None:
        """Run the aggregator (classifications -> incident state in Redis -> spill alerts)."""
        run_role("aggregator", loglevel=faust_loglevel)

    @groups["bench"].command("pipeline")
    def bench_pipeline(
        cameras: int = typer.Option(20, help="simulated cameras"),
        fps: float = typer.Option(2.0, help="frames per second per camera"),
        seconds: float = typer.Option(30.0, help="duration of the latency run"),
        workers: str = typer.Option("1,2", help="classifier worker counts to measure"),
        width: int = typer.Option(480, help="frame width (producers downsize to 480 by default)"),
        throughput_frames: int = typer.Option(1500, help="frames in each saturation (frames/s) run"),
        out: Path = typer.Option(Path("var/bench/pipeline.json"), help="JSON results"),
        embedded: bool = typer.Option(True, help="start a private broker+Redis (False: use the configured ones)"),
        model: Path = typer.Option(None, help="ONNX model (default: worker.model_path)"),
    ) -> None:
        """Throughput and latency of the pipeline through the real broker (prints a table, writes JSON)."""
        from processors.bench import run_bench

        counts = [int(x) for x in workers.split(",") if x.strip()]
        result: dict[str, Any] = run_bench(
            cameras=cameras, fps=fps, seconds=seconds, worker_counts=counts, width=width,
            throughput_frames=throughput_frames, out=out, embedded=embedded, model=model,
        )
        typer.echo(f"wrote {out}" if result else "no result")

    @groups["bench"].command("redis")
    def bench_redis(
        cameras: int = typer.Option(20, help="simulated cameras"),
        frames_per_camera: int = typer.Option(30, help="frames per camera and scene (2 fps capture spacing)"),
        out: Path = typer.Option(Path("var/bench/redis-ops.json"), help="JSON results"),
    ) -> None:
        """Redis commands per frame (clean and spill scenes) and one aggregator's decisions/s, measured."""
        from processors.redis_load import run

        run(cameras=cameras, per_camera=frames_per_camera, out=out)
        typer.echo(f"wrote {out}")
