"""The typed model card: one module writes and reads it; a bad card is one clear error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spillwatch.model_card import (
    ManifestSummary,
    ModelCard,
    ModelError,
    TrainedModel,
    Training,
    card_path_for,
    data_root,
    load_card,
    portable_path,
)
from spillwatch.settings import REPO_ROOT


def _model(tmp_path: Path, payload: bytes = b"not really onnx") -> Path:
    p = tmp_path / "m.onnx"
    p.write_bytes(payload)
    return p


def _card(model: Path, **kw: object) -> ModelCard:
    trained = TrainedModel(input_size=160, map_size=10, threshold=0.8, map_threshold=0.4, **kw)  # type: ignore[arg-type]
    return ModelCard.for_file(model, trained, version="v-test", precision="int8")


def test_card_round_trips_through_its_file(tmp_path: Path) -> None:
    model = _model(tmp_path)
    card = _card(model, training=Training(seed=1, steps=2, settings={"input_size": 160, "archives": []}))
    card.write(card_path_for(model))
    back = load_card(model)
    assert back == card
    assert (back.file, back.precision, back.threshold, back.map_threshold) == ("m.onnx", "int8", 0.8, 0.4)
    back.verify(model)  # the sha256 is the file's


def test_card_detects_another_file(tmp_path: Path) -> None:
    model = _model(tmp_path)
    _card(model).write(card_path_for(model))
    model.write_bytes(b"a different model")
    with pytest.raises(ModelError, match="sha256 does not match"):
        load_card(model).verify(model)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.pop("threshold"), "threshold"),
        (lambda d: d.update(treshold=0.5), "treshold"),                   # a typo is an error, not ignored
        (lambda d: d.update(threshold=1.5), "threshold"),
        (lambda d: d.update(sha256="abc"), "sha256"),
        (lambda d: d.update(file="../elsewhere/m.onnx"), "file"),
        (lambda d: d.update(card_format=99), "card_format"),
    ],
)
def test_invalid_card_is_one_clear_error_line(tmp_path: Path, edit: object, expected: str) -> None:
    model = _model(tmp_path)
    d = json.loads(_card(model).to_json())
    edit(d)  # type: ignore[operator]
    card_path_for(model).write_text(json.dumps(d))
    with pytest.raises(ModelError) as exc:
        load_card(model)
    msg = str(exc.value)
    assert "\n" not in msg and expected in msg and str(card_path_for(model)) in msg


def test_missing_or_garbled_card_is_a_model_error(tmp_path: Path) -> None:
    model = _model(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        load_card(model)
    card_path_for(model).write_text("{not json")
    with pytest.raises(ModelError) as exc:
        load_card(model)
    assert "\n" not in str(exc.value)


def test_recorded_paths_are_relative_to_the_data_root_or_the_repository(tmp_path: Path) -> None:
    assert portable_path(data_root() / "spills-real" / "manifest.jsonl") == "spills-real/manifest.jsonl"
    assert portable_path(REPO_ROOT / "runs" / "x" / "manifest.jsonl") == "runs/x/manifest.jsonl"
    assert portable_path("runs/cache") == "runs/cache"
    elsewhere = portable_path(tmp_path / "export" / "manifest.jsonl")
    assert elsewhere == "export/manifest.jsonl"
    s = ManifestSummary(n=1, manifests=[str(data_root() / "wet-floors" / "manifest.jsonl")])
    assert s.manifests == ["wet-floors/manifest.jsonl"]
    t = Training(seed=1, steps=1, settings={"real_manifest": str(data_root() / "spills-real" / "manifest.jsonl"),
                                            "archives": [str(tmp_path / "a" / "manifest.jsonl")], "lr": 0.1})
    assert t.settings == {"real_manifest": "spills-real/manifest.jsonl", "archives": ["a/manifest.jsonl"], "lr": 0.1}


def test_committed_model_card_is_what_the_cards_render_with_intervals() -> None:
    from training.card import render_markdown
    from training.metrics import interval

    fp32 = load_card(REPO_ROOT / "models" / "spillwatch.onnx")
    int8 = load_card(REPO_ROOT / "models" / "spillwatch-int8.onnx")
    md = (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    assert md == render_markdown(fp32, int8), "models/MODEL_CARD.md is stale: render it from the cards (training/card.py)"
    all_sources = fp32.metrics.onnx_fp32["all-sources"] if fp32.metrics.onnx_fp32 else None
    assert all_sources is not None and all_sources.sources
    for key, r in all_sources.sources.items():  # each rate of the per-source table shows its exact interval
        if r.spill:
            lo, hi = interval(r.tp, r.spill)
            assert f"| {key} | {r.n} | {r.recall:.3f} ({r.tp}/{r.spill}; {lo:.3f}-{hi:.3f}) |" in md
