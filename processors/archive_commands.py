"""CLI: ``spillwatch archiver``, ``spillwatch label``, ``spillwatch archive retention|stats|label-frames``
(``archive export`` is training's: training/commands.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _root(archive: Path | None) -> Path:
    from spillwatch.settings import get_settings

    return Path(archive) if archive is not None else Path(get_settings().archive.root)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    archive = groups["archive"]

    @app.command("archiver")
    def archiver(
        archive_root: Path = typer.Option(None, "--archive", help="archive root (default: archive.root)"),
    ) -> None:
        """Archive frames around incidents, high-scoring frames and a sample of ordinary frames."""
        from processors.archiver import run_archiver
        from spillwatch.settings import get_settings

        run_archiver(get_settings(), archive_root)

    @app.command("label")
    def label(
        incident: str = typer.Argument(..., help="incident id (from the page / spill-alerts)"),
        verdict: bool = typer.Option(..., "--true/--false", help="--true: a real spill; --false: a false alarm"),
        archive_root: Path = typer.Option(None, "--archive", help="archive root (default: archive.root)"),
        by: str = typer.Option("", help="who decided"),
    ) -> None:
        """Label an incident: its archived frames inherit the verdict (false alarm -> hard negatives)."""
        from processors.archive_labels import label_incident

        res = label_incident(_root(archive_root), incident, verdict, by=by)
        typer.echo(json.dumps(res.as_dict()))
        if not res.known_incident:
            typer.echo("warning: the archive holds no frame of this incident (yet); the label is kept", err=True)

    @archive.command("label-frames")
    def label_frames_cmd(
        files: list[str] = typer.Argument(..., help="frame files as in the index (<camera>/<date>/<seq>.jpg)"),
        verdict: bool = typer.Option(..., "--true/--false", help="--true: spill; --false: clean"),
        archive_root: Path = typer.Option(None, "--archive"),
        by: str = typer.Option(""),
    ) -> None:
        """Label individual archived frames (e.g. ordinary samples)."""
        from processors.archive_labels import label_frames

        typer.echo(json.dumps({"labelled": label_frames(_root(archive_root), files, verdict, by=by)}))

    @archive.command("retention")
    def retention(
        archive_root: Path = typer.Option(None, "--archive"),
        dry_run: bool = typer.Option(False, help="only say what would be deleted"),
    ) -> None:
        """Apply the age and size limits (archive.max_age_days, archive.max_bytes) now."""
        from processors.archive_store import apply_retention
        from spillwatch.settings import get_settings

        a = get_settings().archive
        res = apply_retention(
            _root(archive_root), max_age_days=a.max_age_days, max_bytes=a.max_bytes, keep_labelled=a.keep_labelled, dry_run=dry_run
        )
        typer.echo(json.dumps(res.as_dict()))

    @archive.command("stats")
    def stats(archive_root: Path = typer.Option(None, "--archive")) -> None:
        """Frames by camera, reason and label; incidents and bytes."""
        from spillwatch.archive import load_archive, read_incidents

        root = _root(archive_root)
        frames = load_archive(root)
        out: dict[str, object] = {"frames": len(frames), "bytes": sum(f.bytes for f in frames), "incidents": len(read_incidents(root))}
        for key in ("camera", "reason", "label"):
            counts: dict[str, int] = {}
            for f in frames:
                k = str(getattr(f, key))
                counts[k] = counts.get(k, 0) + 1
            out[f"by_{key}"] = counts
        typer.echo(json.dumps(out, indent=2))
