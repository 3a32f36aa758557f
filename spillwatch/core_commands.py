"""CLI: ``spillwatch init-topics`` and ``spillwatch config check`` (what every deployment needs)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    config = groups["config"]

    @app.command("init-topics")
    def init_topics(
        partitions: int = typer.Option(None, help="frames/classifications partitions (kafka.partitions)"),
        wait: float = typer.Option(60.0, help="seconds to wait for the broker"),
    ) -> None:
        """Create the pipeline topics if missing (idempotent; the compose one-shot runs this)."""
        from spillwatch.kafka import create_topics
        from spillwatch.settings import get_settings

        settings = get_settings()
        result = create_topics(settings, partitions=partitions, timeout_s=wait)
        for name, what in result.items():
            typer.echo(f"{what:8s} {name}")

    @config.command("check")
    def check() -> None:
        """Validate the settings a service would load (environment over SPILLWATCH_CONFIG).

        Exit 0 with a one-line summary when valid; 2 with the reason when not."""
        from spillwatch.settings import get_settings

        s = get_settings()
        src = f"config file {s.config}" if s.config else "environment only"
        typer.echo(
            f"config ok ({src}): {len(s.cameras)} camera(s), kafka {s.kafka.bootstrap} ({s.kafka.profile}), "
            f"redis {redact_url(s.redis.url)}, model {s.worker.model_path}, channels {','.join(s.alerting.channels)}"
        )


def redact_url(url: str) -> str:
    """``scheme://***@host/...``: never print a password (spillwatch/redact.py)."""
    from spillwatch.redact import redact_url as redact

    return redact(url)
