"""CLI: ``spillwatch archiver``, ``spillwatch label``, ``spillwatch archive retention|stats|label-frames``
(``archive export`` is training's: training/archive_commands.py)."""

from __future__ import annotations

from pathlib import Path

import typer

ARCHIVE_HELP = "archive root (default: archive.root)"
JSON_HELP = "print the result as JSON"


def _root(archive: Path | None) -> Path:
    from spillwatch.settings import get_settings

    return Path(archive) if archive is not None else Path(get_settings().archive.root)


def archiver(
    archive_root: Path = typer.Option(None, "--archive", help=ARCHIVE_HELP),
    wait: float = typer.Option(60.0, "--wait", help="seconds to wait for the broker at start-up"),
) -> None:
    """Archive frames around incidents, high-scoring frames and a sample of ordinary frames."""
    from processors.archiver import run_archiver
    from spillwatch.readiness import require
    from spillwatch.settings import get_settings

    settings = get_settings()
    require(settings, kafka=True, wait_s=wait)  # Redis is optional (ack labels are synced when it answers)
    run_archiver(settings, archive_root)


def label(
    incident: str = typer.Argument(..., help="incident id (from the page / spill-alerts)"),
    verdict: bool = typer.Option(..., "--true/--false", help="--true: a real spill; --false: a false alarm"),
    archive_root: Path = typer.Option(None, "--archive", help=ARCHIVE_HELP),
    by: str = typer.Option("", help="who decided"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    learn: bool = typer.Option(True, "--learn/--no-learn", help="a false alarm also teaches its camera (suppression, needs Redis)"),
) -> None:
    """Label an incident: its archived frames inherit the verdict (false alarm -> hard negatives), and
    a false alarm teaches its camera at once (docs/suppression.md)."""
    from processors.archive_labels import label_incident
    from spillwatch.cli_options import emit
    from spillwatch.settings import get_settings
    from spillwatch.suppression_store import apply_verdict_quietly, outcome_line

    res = label_incident(_root(archive_root), incident, verdict, by=by)
    # the same verdict teaches the camera at once (docs/suppression.md); the label stands without Redis
    outcome, why = apply_verdict_quietly(get_settings(), incident, verdict, by=by, source="cli") if learn else (None, None)
    out = res.as_dict() | {"suppression": outcome.model_dump(mode="json") if outcome else None}
    emit(
        out, as_json,
        f"incident {incident} labelled {res.label}: {res.frames} archived frame(s) ({res.spill_frames} spill, "
        f"{res.clean_frames} clean, {res.unlabelled_context_frames} context frame(s) left unlabelled)"
        + (f"\n{outcome_line(outcome)}" if outcome else ""),
    )
    if not res.known_incident:
        typer.echo("warning: the archive holds no frame of this incident (yet); the label is kept", err=True)
    if why is not None:
        typer.echo(f"warning: suppression not learned: {why}", err=True)


def label_frames_cmd(
    files: list[str] = typer.Argument(..., help="frame files as in the index (<camera>/<date>/<seq>.jpg)"),
    verdict: bool = typer.Option(..., "--true/--false", help="--true: spill; --false: clean"),
    archive_root: Path = typer.Option(None, "--archive", help=ARCHIVE_HELP),
    by: str = typer.Option("", help="who decided"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Label individual archived frames (e.g. ordinary samples)."""
    from processors.archive_labels import label_frames
    from spillwatch.cli_options import emit

    n = label_frames(_root(archive_root), files, verdict, by=by)
    emit({"labelled": n}, as_json, f"labelled {n} frame(s) {'spill' if verdict else 'clean'}")


def retention(
    archive_root: Path = typer.Option(None, "--archive", help=ARCHIVE_HELP),
    dry_run: bool = typer.Option(False, help="only say what would be deleted"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Apply the age and size limits (archive.max_age_days, archive.max_bytes) now."""
    from processors.archive_store import apply_retention
    from spillwatch.cli_options import emit
    from spillwatch.settings import get_settings

    a = get_settings().archive
    res = apply_retention(
        _root(archive_root), max_age_days=a.max_age_days, max_bytes=a.max_bytes, keep_labelled=a.keep_labelled, dry_run=dry_run
    )
    d = res.as_dict()
    rules = ", ".join(f"{k} {v}" for k, v in sorted(res.plan.by_rule.items())) or "none"
    verb = "would delete" if dry_run else "deleted"
    emit(d, as_json, f"{verb} {d['deleted']} frame(s), {d['deleted_bytes']} bytes (by rule: {rules}); {d['kept_bytes']} bytes kept")


def stats(
    archive_root: Path = typer.Option(None, "--archive", help=ARCHIVE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Frames by camera, reason and label; incidents and bytes."""
    from spillwatch.archive import load_archive, read_incidents
    from spillwatch.cli_options import emit

    root = _root(archive_root)
    frames = load_archive(root)
    out: dict[str, object] = {"frames": len(frames), "bytes": sum(f.bytes for f in frames), "incidents": len(read_incidents(root))}
    lines = [f"{out['frames']} frame(s), {out['bytes']} bytes, {out['incidents']} incident(s)"]
    for key in ("camera", "reason", "label"):
        counts: dict[str, int] = {}
        for f in frames:
            k = str(getattr(f, key))
            counts[k] = counts.get(k, 0) + 1
        out[f"by_{key}"] = counts
        lines.append(f"  by {key}: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"))
    emit(out, as_json, "\n".join(lines))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    archive = groups["archive"]
    app.command("archiver")(archiver)
    app.command("label")(label)
    archive.command("label-frames")(label_frames_cmd)
    archive.command("retention")(retention)
    archive.command("stats")(stats)
