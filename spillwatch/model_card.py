"""The model card: one typed description of a spill model, written by training and read by every
runtime reader (classifier workers, the aggregator's thresholds, replay, evaluation, benchmarks).

It sits beside the model as ``<stem>.card.json``. The runtime needs only the identity block
(``version``, ``sha256``, ``file``, ``precision``, ``input_size``, ``map_size``, ``threshold``,
``map_threshold``); the other sections record how the model was made and measured. Every section
forbids unknown keys, so a typo in a hand-edited card is an error at load time, and paths recorded
in a card are relative to the repository or the data root (never a machine's absolute path).

>>> card = ModelCard(version="v1", sha256="0" * 64, file="m.onnx", precision="fp32",
...                  input_size=160, map_size=10, threshold=0.87)
>>> ModelCard.model_validate_json(card.to_json()) == card
True
>>> portable_path("/somewhere/else/manifest.jsonl")
'else/manifest.jsonl'
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from spillwatch.settings import REPO_ROOT

#: Version of the card's JSON layout (bumped when a section changes incompatibly).
CARD_FORMAT = 1
#: The shared data folder, relative to the repository root (``$SPILLWATCH_DATA_ROOT`` overrides it).
DEFAULT_DATA_ROOT_REL = "../shared/data"
DATA_ROOT_ENV = "SPILLWATCH_DATA_ROOT"


class ModelError(RuntimeError):
    """The model file or its card is missing or inconsistent."""


# ------------------------------------------------------------------ paths
def data_root() -> Path:
    """``$SPILLWATCH_DATA_ROOT`` or ``<repo>/../shared/data`` (resolved)."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).resolve() if env else (REPO_ROOT / DEFAULT_DATA_ROOT_REL).resolve()


def portable_path(p: str | Path) -> str:
    """A path as a committed file may record it: relative paths are kept; an absolute path becomes
    relative to the data root or the repository (``spills-real/manifest.jsonl``,
    ``runs/x/manifest.jsonl``); anything else keeps only its folder and file name."""
    path = Path(p)
    if not path.is_absolute():
        return path.as_posix()
    resolved = path.resolve()
    for root in (data_root(), REPO_ROOT.resolve()):
        if resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix()
    return Path(*path.parts[-2:]).as_posix()


def _portable(v: Any) -> Any:
    return portable_path(v) if isinstance(v, (str, Path)) else v


PortablePath = Annotated[str, BeforeValidator(_portable)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path_for(model_path: Path | str) -> Path:
    """``models/spillwatch.onnx`` -> ``models/spillwatch.card.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


# ------------------------------------------------------------------ sections
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Calibration(_Section):
    method: str = "temperature scaling (in-graph)"
    temperature: float = Field(gt=0)
    fitted_on: list[str] = Field(default_factory=list)
    weighting: str = ""


class ThresholdChoice(_Section):
    """How the decision threshold was chosen on validation data."""

    rule: str
    target_recall: Probability
    max_floor_fpr: Probability | None = None
    recall_thresholds: dict[str, float | None] = Field(default_factory=dict)
    floor_threshold: float | None = None
    fpr_caps: dict[str, float | None] = Field(default_factory=dict)
    max_synth_clean_fpr: Probability | None = None
    notes: list[str] = Field(default_factory=list)


class ManifestSummary(_Section):
    """Counts of the frames a manifest contributed (``training.datasets.summarise``)."""

    n: int
    by_split_source_label: dict[str, int] = Field(default_factory=dict)
    spill_with_polygons: int = 0
    spill_without_polygons: int = 0
    liquids: dict[str, int] = Field(default_factory=dict)
    manifests: list[PortablePath] = Field(default_factory=list)


class SynthSummary(_Section):
    n: int
    seed: int
    size: int
    p_spill: float
    spill: int
    clean: int
    generator: str
    liquids: dict[str, int] = Field(default_factory=dict)


class BatchMix(_Section):
    synth_fraction: Probability
    real_clean_fraction: Probability
    floor_share_of_clean: Probability


class DataSummary(_Section):
    real_train: ManifestSummary | None = None
    real_val: ManifestSummary | None = None
    synthetic_train: SynthSummary | None = None
    synthetic_val: SynthSummary | None = None
    batch_mix: BatchMix | None = None


class GroupMetrics(_Section):
    """One evaluation group: recall for spill groups, FPR for clean groups."""

    n: int
    recall: float | None = None
    fpr: float | None = None


class SliceMetrics(_Section):
    """One source (or data set) of an evaluation set at the card threshold
    (``training.metrics.slice_metrics``): a one-class slice's ROC AUC ranks it against the other
    class of the whole set."""

    n: int
    spill: int
    clean: int
    tp: int
    fn: int
    fp: int
    tn: int
    recall: float | None = None
    fpr: float | None = None
    precision: float | None = None
    roc_auc: float | None = None


class SetMetrics(_Section):
    """Metrics of one evaluation set at the card threshold (``training.metrics.summary`` + groups)."""

    n: int
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    specificity: float | None = None
    npv: float | None = None
    fpr: float | None = None
    fnr: float | None = None
    log_loss: float | None = None
    roc_auc: float | None = None
    pr_auc: float | None = None
    groups: dict[str, GroupMetrics] = Field(default_factory=dict)
    floor_fpr: float | None = None
    floor_n: int = 0
    sources: dict[str, SliceMetrics] = Field(default_factory=dict)    # "<source>/<split>"
    datasets: dict[str, SliceMetrics] = Field(default_factory=dict)   # manifest folder (e.g. "wet-floors")


class Metrics(_Section):
    """Per evaluation set (``real-val``, ``synthetic-val``, ...), by how the model was run."""

    torch_fp32: dict[str, SetMetrics] | None = None
    onnx_fp32: dict[str, SetMetrics] | None = None
    onnx_int8: dict[str, SetMetrics] | None = None


class HistoryPoint(_Section):
    step: int
    frame_loss: float
    map_loss: float
    elapsed_s: float


SettingValue = str | int | float | bool | None | list[str]


class Training(_Section):
    settings: dict[str, SettingValue] = Field(default_factory=dict)
    seed: int
    steps: int
    steps_per_epoch: int | None = None
    train_seconds: float | None = None
    total_seconds: float | None = None
    history: list[HistoryPoint] = Field(default_factory=list)
    torch: str | None = None
    python: str | None = None
    machine: str | None = None

    @field_validator("settings", mode="before")
    @classmethod
    def _portable_settings(cls, v: Any) -> Any:
        """Absolute paths in the recorded recipe become repository- or data-root-relative."""
        if not isinstance(v, dict):
            return v

        def fix(x: Any) -> Any:
            if isinstance(x, Path) or (isinstance(x, str) and x.startswith("/")):
                return portable_path(x)
            if isinstance(x, list):
                return [fix(i) for i in x]
            return x

        return {k: fix(x) for k, x in v.items()}


class Normalisation(_Section):
    inside_graph: bool = True
    name: str
    formula: str
    mean_rgb_0_255: list[float]
    std_rgb_0_255: list[float]
    input: str
    resize: str


class ParityCheck(_Section):
    n: int
    max_abs_prob_diff: float | None = None
    mean_abs_prob_diff: float | None = None
    decision_agreement: float | None = None
    map_cell_agreement: float | None = None


class Parity(_Section):
    onnx_fp32_vs_torch: ParityCheck | None = None
    int8_vs_onnx_fp32: ParityCheck | None = None


class QuantTrial(_Section):
    fp32_nodes: str
    n_fp32_nodes: int
    agreement: float
    mean_abs_prob_diff: float


class QuantSelection(_Section):
    check_frames: int
    threshold: float
    min_agreement: float
    tried: list[QuantTrial] = Field(default_factory=list)


class Quantisation(_Section):
    format: str = "QDQ"
    per_channel: bool = True
    activations: str
    weights: str
    calibration: str
    calibration_frames: int
    op_types: list[str] = Field(default_factory=list)
    fp32_nodes: str = "none"
    selection: QuantSelection | None = None


class AblationArm(_Section):
    steps: int
    train_seconds: float | None = None
    threshold: float
    val_recall: float | None = None
    val_precision: float | None = None
    val_roc_auc: float | None = None
    val_pr_auc: float | None = None
    floor_fpr: float | None = None
    scene_clean_fpr: float | None = None
    synth_recall: float | None = None
    synth_fpr: float | None = None
    synth_roc_auc: float | None = None
    synth_groups: dict[str, GroupMetrics] = Field(default_factory=dict)
    # extra data sets (val splits: evaluated only; "<source>/<split>" slices)
    sources: dict[str, SliceMetrics] = Field(default_factory=dict)
    version: str | None = None


class Ablation(_Section):
    steps: int
    threshold_rule: str
    arms: dict[str, AblationArm] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------ the card
class TrainedModel(_Section):
    """What training knows before export: the decision rule, how it was chosen, the data, the figures."""

    input_size: int = Field(gt=0)
    map_size: int = Field(gt=0)
    threshold: float = Field(gt=0.0, lt=1.0)
    map_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    preliminary: bool = False
    note: str = ""
    backbone: str | None = None
    calibration: Calibration | None = None
    threshold_choice: ThresholdChoice | None = None
    data: DataSummary | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    training: Training | None = None


class ModelCard(TrainedModel):
    """The card of one exported ONNX file (fp32 or int8)."""

    card_format: int = CARD_FORMAT
    version: str = Field(min_length=1)
    sha256: Sha256
    file: str = Field(min_length=1)
    precision: Literal["fp32", "int8"]
    size_bytes: int | None = None
    created: AwareDatetime | None = None
    opset: int | None = None
    fp32_sha256: Sha256 | None = None
    export_note: str | None = None
    normalisation: Normalisation | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    parity: Parity = Field(default_factory=Parity)
    quantisation: Quantisation | None = None
    ablation: Ablation | None = None

    @field_validator("card_format")
    @classmethod
    def _known_format(cls, v: int) -> int:
        if v > CARD_FORMAT:
            raise ValueError(f"card format {v} is newer than this runtime understands ({CARD_FORMAT})")
        return v

    @field_validator("file")
    @classmethod
    def _bare_name(cls, v: str) -> str:
        if Path(v).name != v:
            raise ValueError("file must be the model's file name (the card sits beside it)")
        return v

    @classmethod
    def for_file(cls, model_path: Path, trained: TrainedModel, *, version: str, precision: Literal["fp32", "int8"],
                 created: datetime | None = None, **sections: Any) -> ModelCard:
        """The card of ``model_path``: its identity (name, size, sha256) plus what training recorded."""
        return cls.model_validate({
            **trained.model_dump(), **sections, "version": version, "precision": precision,
            "sha256": sha256_file(model_path), "file": model_path.name, "size_bytes": model_path.stat().st_size,
            "created": created,
        })

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"

    def write(self, path: Path) -> Path:
        """Write the card as JSON to ``path`` (normally ``card_path_for(model)``)."""
        path.write_text(self.to_json())
        return path

    def verify(self, model_path: Path) -> None:
        """ModelError unless ``model_path`` is the file this card describes (sha256)."""
        if sha256_file(model_path) != self.sha256:
            raise ModelError(f"{model_path}: sha256 does not match its model card")


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    loc = ".".join(str(x) for x in e["loc"]) or "(card)"
    return f"{exc.error_count()} error(s), first: {loc}: {e['msg']}"


def read_card(card_path: Path) -> ModelCard:
    """Parse a card file; a missing, unreadable or invalid card is one clear ModelError line."""
    try:
        text = Path(card_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model card not found: {card_path}") from None
    except OSError as exc:
        raise ModelError(f"model card unreadable: {card_path}: {exc}") from None
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as exc:
        raise ModelError(f"invalid model card {card_path}: {_first_error(exc)}") from None


def load_card(model_path: Path | str) -> ModelCard:
    """The card beside ``model_path`` (``<stem>.card.json``); ModelError when it is missing or invalid."""
    cp = card_path_for(model_path)
    if not cp.is_file():
        raise ModelError(f"model card not found beside the model: {cp}")
    return read_card(cp)
