"""CLI: ``spillwatch replay`` and ``spillwatch models compare``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def load_frames(archive: Path | None, manifest: Path | None, video: Path | None, fps: float, split: str | None = None,
                camera: str | None = None) -> tuple[list, str]:  # type: ignore[type-arg]
    from training import replay_sources as rs

    given = [x for x in (archive, manifest, video) if x is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --archive, --manifest, --video")
    if archive is not None:
        return rs.from_archive(archive), f"archive:{archive}"
    if manifest is not None:
        return rs.from_manifest(manifest, fps=fps, split=split), f"manifest:{manifest}"
    assert video is not None
    return rs.from_video(video, fps=fps, camera=camera or rs.DEFAULT_CAMERA), f"video:{video}"


def _write(report: dict, out: Path) -> None:  # type: ignore[type-arg]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))


def replay(
    out: Path = typer.Option(None, "--out", help="write the JSON report here (required)"),
    archive: Path = typer.Option(None, "--archive", help="archive root"),
    manifest: Path = typer.Option(None, "--manifest", help="manifest.jsonl (shared format)"),
    video: Path = typer.Option(None, "--video", help="a video file"),
    model: Path = typer.Option(None, "--model", help="ONNX model for the workers (default: worker.model_path)"),
    speed: float = typer.Option(0.0, "--speed", min=0.0, help="x real time; 0 = as fast as possible"),
    fps: float = typer.Option(2.0, "--fps", help="frame rate for manifests without times and videos"),
    split: str = typer.Option(None, "--split", help="only this split of the manifest (train/val)"),
    camera: str = typer.Option(None, "--camera", help="camera id for --video"),
    local: bool = typer.Option(False, "--local", help="start the embedded broker + Redis for this replay"),
    workers: int = typer.Option(1, "--workers", min=1, help="classifier worker processes"),
    threshold: float = typer.Option(None, "--threshold", help="frame-metric threshold (default: the model card's)"),
    tolerance_s: float = typer.Option(10.0, help="an incident confirmed this long after a spill segment ends still detects it"),
    timeout: float = typer.Option(900.0, "--timeout", help="give up after S seconds"),
    keep: bool = typer.Option(False, "--keep", help="keep the replay's topics and Redis keys"),
    work_dir: Path = typer.Option(None, help="service logs and generated config (default: a temp folder)"),
    suppression: bool = typer.Option(True, "--suppression/--no-suppression",
                                     help="replay with the cameras' learned suppressions (the report gives both anyway)"),
    old_report: Path = typer.Option(None, "--report", hidden=True, help="deprecated: --out"),
    old_timeout_s: float = typer.Option(None, "--timeout-s", hidden=True, help="deprecated: --timeout"),
) -> None:
    """Republish frames through the real pipeline in an isolated namespace and report metrics."""
    from spillwatch.cli_options import renamed, required
    from spillwatch.readiness import require
    from spillwatch.settings import get_settings
    from training.replay import ReplayError, ReplayOptions, run_replay

    out = required(renamed(out, old_report, new="--out", old="--report"), "--out", "the JSON report to write")
    timeout = renamed(None, old_timeout_s, new="--timeout", old="--timeout-s") or timeout
    settings = get_settings()
    if not local:  # before loading frames: say at once that there is no broker/Redis, and name --local
        require(settings, kafka=True, redis=True, wait_s=5, local_option=True)
    frames, source = load_frames(archive, manifest, video, fps, split, camera)
    opts = ReplayOptions(
        model=model, speed=speed, fps=fps, local=local, workers=workers, threshold=threshold, tolerance_s=tolerance_s,
        timeout_s=timeout, keep=keep, work_dir=work_dir, source=source, suppression=suppression,
    )
    try:
        res = run_replay(frames, settings, opts)
    except ReplayError as exc:
        typer.echo(f"replay failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    _write(res, out)
    f, i, sup = res["frames"], res["incidents"], res["suppression"]
    rate = sup["false_incidents_per_camera_hour"]
    typer.echo(
        f"replay {res['replay']['id']}: {res['replay']['classified']}/{res['replay']['frames']} frames classified; "
        f"frame recall {f['recall']} precision {f['precision']}; incidents {i['incidents']} "
        f"(segments detected {i['detected_segments']}/{i['spill_segments']}, false {i['false_incidents']}); "
        f"false incidents per camera-hour with suppression {_rate(rate['with'])}, without {_rate(rate['without'])} "
        f"({sup['frames_suppressed']} frame(s) suppressed); report {out}"
    )


def _rate(v: float | None) -> str:
    return "n/a (unlabelled)" if v is None else f"{v:.2f}"


def compare(
    model_a: Path = typer.Argument(..., help="current model (A)"),
    model_b: Path = typer.Argument(..., help="candidate model (B)"),
    manifest: Path = typer.Option(..., "--manifest", help="evaluation manifest (both models, same frames)"),
    out: Path = typer.Option(None, "--out", help="write the JSON report here (required; a .md summary is written beside it)"),
    split: str = typer.Option(None, "--split", help="only this split of the manifest"),
    replay: bool = typer.Option(False, "--replay", help="also replay the manifest through the pipeline for both"),
    replay_manifest: Path = typer.Option(None, help="replay this manifest instead of --manifest"),
    fps: float = typer.Option(2.0, "--fps"),
    local: bool = typer.Option(False, "--local", help="replays start the embedded broker + Redis"),
    promote: bool = typer.Option(False, "--promote", help="copy B over the default model if it wins"),
    target: Path = typer.Option(None, help="where --promote copies B (default: worker.model_path)"),
    old_report: Path = typer.Option(None, "--report", hidden=True, help="deprecated: --out"),
) -> None:
    """Both models on the same evaluation set (+ replay): every metric side by side, and the verdict."""
    from spillwatch.cli_options import renamed, required
    from spillwatch.readiness import require
    from spillwatch.settings import get_settings
    from training.compare import compare_models, promote_model, write_markdown

    out = required(renamed(out, old_report, new="--out", old="--report"), "--out", "the JSON report to write")
    settings = get_settings()
    if replay and not local:  # before the (long) evaluation: no broker/Redis -> say so, name --local
        require(settings, kafka=True, redis=True, wait_s=5, local_option=True)
    res = compare_models(
        model_a, model_b, manifest, split=split, replay=replay, replay_manifest=replay_manifest, fps=fps, local=local, settings=settings,
    )
    if promote:
        res["promotion"] = promote_model(model_b, Path(target or settings.worker.model_path), res["verdict"])
    _write(res, out)
    write_markdown(res, out.with_suffix(".md"))
    v = res["verdict"]
    typer.echo(f"{'B wins' if v['promote'] else 'A stays'}: {v['reason']}; report {out}")
    if promote and not v["promote"]:
        raise typer.Exit(3)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("replay")(replay)
    groups["models"].command("compare")(compare)
