"""CLI: ``spillwatch suppressions list|remove|add`` — the learned false alarms (docs/suppression.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

JSON_HELP = "print the result as JSON"


def _store() -> Any:
    import redis

    from spillwatch.settings import get_settings
    from spillwatch.suppression_store import SuppressionStore

    s = get_settings()
    client = redis.Redis.from_url(s.redis.url, socket_timeout=5, socket_connect_timeout=5)
    return SuppressionStore(client, s.redis.key_prefix, s.suppression)


def list_cmd(
    camera: str = typer.Option(None, "--camera", help="only this camera"),
    active: bool = typer.Option(False, "--active", help="leave out expired ones"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Every camera's suppressions: origin incident, who marked it and when, expiry, how often each fired."""
    from spillwatch.cli_options import emit

    items = _store().listing(camera, include_expired=not active)
    lines = [f"{len(items)} suppression(s)"]
    for i in items:
        e = i.entry
        last = f", last {i.last_fired:%Y-%m-%d %H:%M:%S}" if i.last_fired else ""
        state = "EXPIRED" if i.expired else f"until {e.expires_at:%Y-%m-%d %H:%M}"
        lines.append(
            f"  {e.id}  {e.camera_id}  from {e.incident_id} by {e.by or '-'} ({e.source}) at {e.created_at:%Y-%m-%d %H:%M}, "
            f"{state}; {len(e.cells)} cell(s) = {e.area:.0%} of the frame; fired {i.fired} frame(s){last}"
            + (" [forced]" if e.forced else "")
        )
    emit([i.as_dict() for i in items], as_json, "\n".join(lines))


def remove_cmd(
    entry: str = typer.Argument(..., help="suppression id (sup-...), from `spillwatch suppressions list`"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Remove a suppression: its camera pages on those cells again (every worker within suppression.refresh_s)."""
    from spillwatch.cli_options import emit

    gone = _store().remove(entry)
    if gone is None:
        typer.echo(f"unknown suppression {entry!r} (see `spillwatch suppressions list`)", err=True)
        raise typer.Exit(1)
    emit({"removed": gone.id, "camera_id": gone.camera_id, "incident_id": gone.incident_id}, as_json,
         f"removed {gone.id} of {gone.camera_id} (learned from {gone.incident_id})")


def add_cmd(
    incident: str = typer.Argument(..., help="a false-alarm incident id"),
    force: bool = typer.Option(False, "--force", help="even above suppression.max_area of the camera's frame"),
    by: str = typer.Option(None, "--by", help="who decided (default: $USER)"),
    archive: Path = typer.Option(None, "--archive", help="archive root: learn from its frames of the incident when Redis no longer keeps them"),
    model: Path = typer.Option(None, "--model", help="with --archive: the ONNX model (default: worker.model_path)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Learn a suppression from a false alarm now (a false-alarm verdict does it by itself; use this with
    --force after the area cap refused one, or --archive for an incident older than suppression.learn_ttl_s)."""
    import getpass

    from spillwatch.cli_options import emit
    from spillwatch.settings import get_settings
    from spillwatch.suppression_store import observations_from_archive, outcome_line

    fallback = None
    if archive is not None:
        def fallback() -> list[Any]:
            from spillwatch.model import SpillModel

            s = get_settings()
            m = SpillModel.load(model or s.worker.model_path, threads=1)
            return observations_from_archive(archive, incident, m, s.suppression.learn_max_frames)

    outcome = _store().learn(incident, by=by or getpass.getuser() or "unknown", source="cli", force=force, fallback=fallback)
    emit(outcome.model_dump(mode="json"), as_json, outcome_line(outcome))
    if outcome.status != "created":
        raise typer.Exit(1)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    group = typer.Typer(no_args_is_help=True, help="Learned false alarms per camera (list, remove, add).")
    app.add_typer(group, name="suppressions")
    group.command("list")(list_cmd)
    group.command("remove")(remove_cmd)
    group.command("add")(add_cmd)
