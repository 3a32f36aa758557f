"""CLI: ``spillwatch demo`` (the README's main job)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    @app.command("demo")
    def demo(
        report: Path = typer.Option(Path("var/demo-report.json"), "--report", help="write the JSON report here"),
        workers: int = typer.Option(1, "--workers", min=1, max=8, help="classifier workers in the group"),
        speed: float = typer.Option(1.0, "--speed", min=0.1, max=10.0, help="play the clips at this multiple of real time"),
    ) -> None:
        """Run the whole pipeline on the embedded stack and the bundled clips; stop when they end."""
        from spillwatch.demo import run_demo

        rep = run_demo(report, workers=workers, speed=speed)
        spill = rep["cameras"].get("demo-spill", {})
        clean = rep["cameras"].get("demo-clean", {})
        ok = bool(spill.get("pages")) and not clean.get("pages")
        if not ok:
            typer.echo("demo: unexpected outcome (the spill clip should page, the clean clip should not)", err=True)
            raise typer.Exit(1)
