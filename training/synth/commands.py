"""CLI for the synthetic generator: `spillwatch synth images` and `spillwatch synth clip`.

training/commands.py calls `register(app, groups)`; it adds a `synth` typer group.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    synth = typer.Typer(no_args_is_help=True, help="Synthetic staged-spill images and clips (deterministic from a seed).")
    groups["synth"] = synth
    app.add_typer(synth, name="synth")

    @synth.command("images")
    def images_cmd(
        out: Path = typer.Argument(..., help="output folder (images/, masks/, manifest.jsonl)"),
        n: int = typer.Option(200, "-n", "--n", help="number of images"),
        seed: int = typer.Option(0, help="first seed; image i uses seed + i"),
        size: int = typer.Option(256, help="image side in pixels"),
        p_spill: float = typer.Option(0.5, help="share of spill images"),
        val_fraction: float = typer.Option(0.0, help="share of images put in split 'val' (by seed, deterministic)"),
        quality: int = typer.Option(92, help="JPEG quality of the written images"),
    ) -> None:
        """Write N images + masks and a manifest.jsonl in the shared format (plus a 'mask' path)."""
        from training.synth.export import write_images

        summary = write_images(out, n=n, seed=seed, size=size, p_spill=p_spill, val_fraction=val_fraction, quality=quality)
        typer.echo(f"wrote {summary['n']} images ({summary['spill']} spill, {summary['clean']} clean) to {out}")

    @synth.command("clip")
    def clip_cmd(
        out: Path = typer.Argument(..., help="output .mp4 (a sidecar .json is written beside it)"),
        seed: int = typer.Option(0),
        spill: bool = typer.Option(True, "--spill/--clean"),
        seconds: float = typer.Option(20.0),
        fps: float = typer.Option(5.0),
        width: int = typer.Option(640),
        height: int = typer.Option(480),
        onset_s: float = typer.Option(None, help="spill onset (default 30 % of the clip)"),
        liquid: str = typer.Option(None, help="pin the liquid (water, tea, juice, blackoil, cookingoil, milk, chemical, film, foam)"),
        floor: str = typer.Option(None, help="pin the floor (e.g. marble, tiles, epoxy, carpet, wood)"),
        masks: bool = typer.Option(False, "--masks", help="also write per-frame mask PNGs to <stem>_masks/"),
    ) -> None:
        """Render a clip where a spill appears at onset_s and grows while people walk by."""
        from training.synth.clip import render_clip

        t = render_clip(out, seed=seed, spill=spill, seconds=seconds, fps=fps, size=(width, height),
                        onset_s=onset_s, liquid=liquid, floor=floor, write_masks=masks)
        typer.echo(f"wrote {out} ({t.n_frames} frames, onset {t.onset_s}) and {out.with_suffix('.json')}")
