"""CLI: ``spillwatch archive export`` (the labelled archive as a training manifest)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    archive = groups["archive"]

    @archive.command("export")
    def export(
        manifest: Path = typer.Option(..., "--manifest", help="manifest.jsonl to write"),
        archive_root: Path = typer.Option(None, "--archive", help="archive root (default: archive.root)"),
        block_hours: float = typer.Option(1.0, help="time block of the train/val split (per camera)"),
        val_fraction: float = typer.Option(0.2, min=0.0, max=1.0, help="share of blocks that go to val"),
        guard_s: float = typer.Option(60.0, help="leave out val frames this close to a train frame"),
        val_camera: list[str] = typer.Option([], help="put every frame of this camera in val (repeatable)"),
        seed: str = typer.Option("spillwatch-archive", help="split hash seed"),
        as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    ) -> None:
        """Write the labelled archive as a manifest.jsonl (the format of shared/data/spills-real)."""
        from spillwatch.cli_options import emit
        from spillwatch.settings import get_settings
        from training.archive_export import SplitConfig, export_manifest

        cfg = SplitConfig(
            block_s=block_hours * 3600, val_fraction=val_fraction, guard_s=guard_s, seed=seed, val_cameras=frozenset(val_camera)
        )
        summary = export_manifest(archive_root or Path(get_settings().archive.root), manifest, cfg)
        splits = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_split_label.items())) or "none"
        emit(
            summary.as_dict(), as_json,
            f"wrote {manifest}: {summary.n} labelled frame(s) ({splits}); {summary.unlabelled_skipped} unlabelled skipped, "
            f"{summary.guard_dropped} dropped by the split guard",
        )

