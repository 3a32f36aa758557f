"""Fine-tuning: real manifests + synthetic staged spills -> calibrated SpillNet -> ONNX fp32/int8 + cards.

Reproducible: every batch is drawn and augmented from ``rng([seed, step])``, torch is seeded, the
thread count is fixed, and the data, settings and seed are written into the model card.
"""

from __future__ import annotations

import math
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from queue import Queue
from typing import Any, Literal, get_args

import cv2
import numpy as np

from spillwatch.model_card import (
    BatchMix,
    Calibration,
    DataSummary,
    HistoryPoint,
    ManifestSummary,
    Metrics,
    ModelCard,
    SetMetrics,
    SynthSummary,
    ThresholdChoice,
    TrainedModel,
    Training,
)
from training import calibration, metrics
from training.augment import AugmentConfig, augment, resize_square
from training.datasets import (
    LoadedImage,
    Record,
    SynthSet,
    load_manifest,
    load_record_image,
    make_synth_set,
    split_records,
    summarise,
    synth_available,
)

DarkCloseupFrames = Literal["all-clean", "floor-photos"]
DARK_CLOSEUP_FRAMES: tuple[str, ...] = get_args(DarkCloseupFrames)


@dataclass
class TrainConfig:
    out: Path = Path("runs/train")
    real_manifest: Path | None = None          # None: no real data
    archives: list[Path] = field(default_factory=list)
    # extra data sets (e.g. wet-floors, interiors): their train split trains (less a held-out "tune"
    # part that sets the threshold), their val split is only evaluated
    extra_manifests: list[Path] = field(default_factory=list)
    train_on_extra: bool = True                # False: extra sets are only evaluated (tune + val; ablation)
    tune_fraction: float = 0.25                # share of each extra train split held out for the threshold
    frame_only_sources: list[str] = field(default_factory=lambda: ["wet-floor-stock"])  # boxes, not outlines: no map loss
    extra_spill_share: float = 0.25            # share of extra-set spill frames among real spill draws
    extra_clean_share: float = 0.4             # share of extra-set clean frames (interiors) among real clean draws
    composites: int = 0                        # real liquids cut out along polygons, pasted onto clean train frames (0: the shipped recipe; docs/model.md)
    composite_fraction: float = 0.2            # share of composites in a batch
    closeup_fraction: float = 0.0              # share of close-up views in augmentation (augment.AugmentConfig.closeup)
    dark_closeup_fraction: float = 0.0         # of the close-ups of a real clean frame, the share around a dark spot (augment.AugmentConfig.dark_closeup)
    dark_closeup_frames: DarkCloseupFrames = "all-clean"  # which real clean frames get them (floor photos only, or every one)
    box_closeup_fraction: float = 0.0          # share of the views of a frame-only spill (wet-floor photo) that are close-ups inside its boxes
    figured_floors: float = 0.0                # chance that a generated wooden floor/desk/carpet gets knots or a motif (synth/figures.py); train set only
    tune_target_recall: float = 0.8            # recall target of the held-out extra spill sets (wet floors)
    max_tune_clean_fpr: float | None = 0.02    # FPR cap on the held-out extra clean sets (interiors)
    synth_exclude: list[str] = field(default_factory=list)  # generator distractors left out (ablation)
    resume: Path | None = None                 # a model.pt of an earlier run: skip training, redo calibration/threshold/export
    report_all_sources: bool = True            # also evaluate every source and split (per-source table)
    use_real: bool = True
    use_synthetic: bool = True
    synthetic: int = 4000                      # synthetic training samples
    synthetic_val: int = 600                   # held-out synthetic samples (calibration, threshold groups)
    synth_size: int = 200                      # generator render size (augmentation crops it to input_size)
    synth_fraction: float = 0.35               # share of synthetic samples in a batch when both are used
    real_clean_fraction: float = 0.45          # share of clean frames among the real samples of a batch
    floor_share_of_clean: float = 0.5          # of those, share drawn from the floor photos
    input_size: int = 192
    epochs: float = 4.0
    steps_per_epoch: int | None = None         # default: (real train + synthetic) / batch
    max_steps: int | None = None               # hard cap (tests)
    batch_size: int = 32
    lr: float = 1.5e-3
    backbone_lr_mult: float = 0.35
    weight_decay: float = 1e-4
    warmup_steps: int = 25
    map_weight: float = 1.0
    freeze_blocks: int = 3
    ema_decay: float = 0.0                     # > 0: export an exponential moving average of the weights (0: the last step's weights)
    bn_recompute_batches: int = 0              # > 0: re-estimate BatchNorm statistics on this many fresh training batches (bn_stats.py)
    backbone: str = "efficientnet-lite0"       # or "mobilenet-v2" (net.py; docs/model.md has the comparison)
    normalisation: str | None = None           # None: the backbone's own ("tf" (x-127)/128 for EfficientNet-Lite0, "imagenet")
    pretrained: bool = True
    augment_strength: float = 1.0
    seed: int = 20261129
    threads: int = 2
    gen_workers: int = 2
    cache_dir: Path | None = Path("runs/cache")
    target_recall: float = 0.97
    max_floor_fpr: float = 0.01
    max_synth_clean_fpr: float | None = 0.02   # FPR cap on the synthetic clean scenes (shadows, reflections, stains...)
    threshold_groups: str = "real+synth"       # "real" | "real+synth": groups whose recall the threshold must reach
    map_threshold: float = 0.5
    export_int8: bool = True
    calib_frames: int = 200
    check_frames: int = 400                    # held-out training frames that select the int8 fp32 island
    preliminary: bool = False
    note: str = ""
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, list):
                d[k] = [str(x) for x in v]
        return d


# ------------------------------------------------------------------ data
def runtime_input(img_bgr: np.ndarray, size: int) -> np.ndarray:
    """Exactly the runtime preprocessing after decoding: whole frame -> S x S (INTER_AREA) -> RGB."""
    return cv2.cvtColor(resize_square(img_bgr, size), cv2.COLOR_BGR2RGB)


@dataclass
class Pools:
    real_spill: list[int]
    real_scene_clean: list[int]
    real_floor: list[int]
    extra_spill: list[int] = field(default_factory=list)
    extra_clean: list[int] = field(default_factory=list)


class BatchMaker:
    """Draws and augments batch ``step`` deterministically from ``rng([seed, step])``."""

    def __init__(self, cfg: TrainConfig, real: Sequence[Record], real_imgs: Sequence[LoadedImage], synth: SynthSet | None,
                 composites: SynthSet | None = None, extra: frozenset[str] = frozenset()) -> None:
        """``extra``: manifests (paths as in ``Record.manifest``) whose frames form the extra pools."""
        self.cfg = cfg
        self.real = list(real)
        self.imgs = list(real_imgs)
        self.synth = synth if synth is not None and len(synth) else None
        self.comp = composites if composites is not None and len(composites) else None
        self.grid = cfg.input_size // 16
        self.aug = AugmentConfig(strength=cfg.augment_strength, closeup=cfg.closeup_fraction,
                                 dark_closeup=cfg.dark_closeup_fraction)
        self.box_aug = replace(self.aug, closeup=1.0)  # a close-up every time (at the recipe's strength 1)
        ex = [r.manifest in extra for r in self.real]
        self.pools = Pools(
            real_spill=[i for i, r in enumerate(self.real) if r.y == 1 and not ex[i]],
            real_scene_clean=[i for i, r in enumerate(self.real) if r.y == 0 and not r.is_floor and not ex[i]],
            real_floor=[i for i, r in enumerate(self.real) if r.y == 0 and r.is_floor and not ex[i]],
            extra_spill=[i for i, r in enumerate(self.real) if r.y == 1 and ex[i]],
            extra_clean=[i for i, r in enumerate(self.real) if r.y == 0 and ex[i]],
        )
        if not self.real and self.synth is None:
            raise ValueError("no training data: enable real data or the synthetic generator")

    def _real_index(self, rng: np.random.Generator) -> int:
        p = self.pools
        cfg = self.cfg
        clean_pool: list[int]
        if rng.random() < cfg.real_clean_fraction and (p.real_scene_clean or p.real_floor or p.extra_clean):
            if p.extra_clean and (not (p.real_scene_clean or p.real_floor) or rng.random() < cfg.extra_clean_share):
                clean_pool = p.extra_clean
            else:
                use_floor = p.real_floor and (not p.real_scene_clean or rng.random() < cfg.floor_share_of_clean)
                clean_pool = p.real_floor if use_floor else p.real_scene_clean
            return int(clean_pool[rng.integers(len(clean_pool))])
        if p.extra_spill and (not p.real_spill or rng.random() < cfg.extra_spill_share):
            return int(p.extra_spill[rng.integers(len(p.extra_spill))])
        pool = p.real_spill or p.real_scene_clean or p.real_floor or p.extra_clean
        return int(pool[rng.integers(len(pool))])

    def make(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(images uint8 [B,S,S,3] RGB, labels float [B], map targets [B,G,G], map valid [B])."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, step])
        s, g, b = cfg.input_size, self.grid, cfg.batch_size
        xs = np.zeros((b, s, s, 3), np.uint8)
        ys = np.zeros(b, np.float32)
        ms = np.zeros((b, g, g), np.float32)
        valid = np.zeros(b, np.float32)
        for k in range(b):
            u = rng.random()
            synth_p = cfg.synth_fraction if self.real else 1.0
            comp_p = cfg.composite_fraction if self.comp is not None else 0.0
            gen: SynthSet | None = None
            if self.synth is not None and u < synth_p:
                gen = self.synth
            elif self.comp is not None and (u < synth_p + comp_p or (not self.real and self.synth is None)):
                gen = self.comp
            if gen is not None:
                i = int(rng.integers(len(gen)))
                img, mask, y = gen.images[i], gen.masks[i], int(gen.labels[i])
                xs[k], ms[k] = augment(rng, img, mask, s, g, self.aug)
                ys[k], valid[k] = y, 1.0
            else:
                i = self._real_index(rng)
                rec, li = self.real[i], self.imgs[i]
                ys[k], valid[k] = rec.y, 0.0 if li.mask is None else 1.0
                if (li.region is not None and cfg.box_closeup_fraction > 0 and cfg.augment_strength > 0
                        and rng.random() < cfg.box_closeup_fraction):
                    # a close-up inside the boxes of a frame-only spill (the wet floor magnified): the label
                    # holds because the view is centred on a boxed pixel and keeps most of the boxes' area;
                    # the boxes are no outline, so still no map loss
                    xs[k], _ = augment(rng, li.image, li.region, s, g, self.box_aug)
                    continue
                mild = rec.y == 1 and li.mask is None  # unlocalised spill: do not crop it away
                dark_ok = rec.y == 0 and (cfg.dark_closeup_frames == "all-clean" or rec.is_floor)
                xs[k], ms[k] = augment(rng, li.image, li.mask, s, g, self.aug, mild_geometry=mild, known_clean=dark_ok)
        return xs, ys, ms, valid


class Prefetcher:
    """Builds the next batches in a background thread (OpenCV/numpy release the GIL)."""

    def __init__(self, fn: Callable[[int], Any], steps: int, depth: int = 3) -> None:
        self.q: Queue[Any] = Queue(maxsize=depth)
        self._t = threading.Thread(target=self._run, args=(fn, steps), daemon=True)
        self._t.start()

    def _run(self, fn: Callable[[int], Any], steps: int) -> None:
        try:
            for step in range(steps):
                self.q.put(fn(step))
        except BaseException as exc:  # surface errors in the consumer
            self.q.put(exc)

    def get(self) -> Any:
        item = self.q.get()
        if isinstance(item, BaseException):
            raise item
        return item


# ------------------------------------------------------------------ inference helpers (torch)
def torch_logits(net: Any, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from training.net import normalise_batch

    net.eval()
    outs_l, outs_m = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = normalise_batch(torch.from_numpy(np.ascontiguousarray(images[i : i + batch])), net)
            logit, m = net(x)
            outs_l.append(logit.numpy())
            outs_m.append(m.numpy())
    if not outs_l:
        g = net.grid
        return np.zeros(0, np.float32), np.zeros((0, g, g), np.float32)
    return np.concatenate(outs_l), np.concatenate(outs_m)


@dataclass
class EvalSet:
    name: str
    images: np.ndarray              # uint8 [N,S,S,3] RGB, runtime preprocessing
    y: np.ndarray                   # int [N]
    groups: list[str]
    is_floor: np.ndarray            # bool [N]
    sources: list[str] = field(default_factory=list)   # "<source>/<split>" per frame (real sets)


def real_eval_set(name: str, recs: Sequence[Record], imgs: Sequence[LoadedImage], size: int) -> EvalSet:
    x = np.stack([runtime_input(li.image, size) for li in imgs]) if imgs else np.zeros((0, size, size, 3), np.uint8)
    return EvalSet(name, x, np.array([r.y for r in recs], np.int64), [r.group for r in recs],
                   np.array([r.is_floor for r in recs], bool), [r.source_split for r in recs])


def synth_eval_set(s: SynthSet, size: int) -> EvalSet:
    x = np.stack([runtime_input(im, size) for im in s.images]) if len(s) else np.zeros((0, size, size, 3), np.uint8)
    groups = [("spill:" + str(m.get("liquid", "synthetic"))) if y else "clean:synthetic" for m, y in zip(s.metas, s.labels, strict=True)]
    return EvalSet("synthetic-val", x, s.labels.astype(np.int64), groups, np.zeros(len(s), bool))


def group_report(probs: np.ndarray, ev: EvalSet, threshold: float) -> dict[str, Any]:
    """Metrics at ``threshold`` on the whole set and per group (recall for spill groups, FPR for clean)."""
    probs = np.asarray(probs, dtype=np.float64)  # float32 arrays would compare in float32
    out: dict[str, Any] = metrics.summary(ev.y, probs, threshold)
    per: dict[str, Any] = {}
    for gname in sorted(set(ev.groups)):
        idx = np.array([g == gname for g in ev.groups])
        n = int(idx.sum())
        hits = int(np.sum(probs[idx] >= threshold))
        key = "recall" if gname.startswith("spill") else "fpr"
        per[gname] = {"n": n, key: (hits / n) if n else None}
    out["groups"] = per
    fl = ev.is_floor
    out["floor_fpr"] = float(np.mean(probs[fl] >= threshold)) if fl.any() else None
    out["floor_n"] = int(fl.sum())
    if ev.sources:
        out["sources"] = metrics.slice_metrics(ev.y, probs, ev.sources, threshold)
    return out


def pick_threshold(cfg: TrainConfig, evsets: Sequence[EvalSet], probs: dict[str, np.ndarray]) -> calibration.ThresholdChoice:
    """The threshold rule on the threshold-picking sets: spills-real val (recall per liquid, floor-photo
    cap), synthetic val (recall per liquid, clean cap), the extra sets' tune part (own recall target,
    FPR cap). ``extra-val`` and ``all-sources`` are never used."""
    pos_groups: dict[str, np.ndarray] = {}
    group_targets: dict[str, float] = {}
    floor_neg = np.zeros(0)
    for e in evsets:
        if e.name == "synthetic-val" and (cfg.threshold_groups != "real+synth" or not cfg.use_synthetic):
            continue
        if e.name in ("extra-val", "all-sources"):
            continue  # evaluated only
        if e.name == "tune":
            p = probs[e.name]
            for src in sorted({x for x in e.sources}):
                idx = np.array([x == src for x in e.sources])
                if e.y[idx].min() == 1 and idx.sum() >= 5:
                    pos_groups[f"tune/{src}"] = p[idx]
                    group_targets[f"tune/{src}"] = cfg.tune_target_recall
            continue
        p = probs[e.name]
        for gname in sorted(set(e.groups)):
            if gname.startswith("spill"):
                idx = np.array([gg == gname for gg in e.groups])
                if idx.sum() >= 20:  # tiny groups would make the threshold noise
                    pos_groups[f"{e.name}/{gname}"] = p[idx]
        if e.is_floor.any():
            floor_neg = np.concatenate([floor_neg, p[e.is_floor]])
    neg_caps: dict[str, tuple[np.ndarray, float]] = {}
    for e in evsets:
        if e.name == "synthetic-val" and cfg.use_synthetic and cfg.max_synth_clean_fpr is not None:
            neg_caps["synthetic clean scenes (distractors)"] = (probs[e.name][e.y == 0], cfg.max_synth_clean_fpr)
        if e.name == "tune" and cfg.max_tune_clean_fpr is not None:
            for src in sorted(set(e.sources)):
                idx = np.array([x == src for x in e.sources]) & (e.y == 0)
                if idx.sum():
                    neg_caps[f"tune/{src}"] = (probs[e.name][idx], cfg.max_tune_clean_fpr)
    # in a conflict the synthetic sets count less than real frames: all synthetic liquid groups together
    # weigh 0.5, the synthetic clean cap 0.5
    synth_groups = [k for k in pos_groups if k.startswith("synthetic-val/")]
    weights = {k: 0.5 / len(synth_groups) for k in synth_groups}
    weights.update({k: 0.5 for k in neg_caps if k.startswith("synthetic")})
    choice = calibration.choose_threshold(pos_groups, floor_neg, cfg.target_recall, cfg.max_floor_fpr, neg_caps,
                                          group_targets=group_targets, weights=weights)
    return choice


# ------------------------------------------------------------------ main
def _log(msg: str) -> None:
    from spillwatch.logs import get_logger

    get_logger("training").info(msg)


def load_real(cfg: TrainConfig) -> tuple[list[Record], list[Record]]:
    """(train, val) records. The real manifest's val split is always loaded (calibration, threshold,
    figures) even with ``use_real`` off; its train split only with ``use_real``. Archive/extra
    manifests contribute both splits (missing split -> train)."""
    train_recs: list[Record] = []
    val_recs: list[Record] = []
    if cfg.real_manifest is not None and Path(cfg.real_manifest).is_file():
        recs = load_manifest(cfg.real_manifest)
        val_recs += split_records(recs, "val")
        if cfg.use_real:
            train_recs += split_records(recs, "train")
    elif cfg.use_real and cfg.real_manifest is not None:
        raise FileNotFoundError(f"real manifest not found: {cfg.real_manifest} (set --manifest or use --no-real)")
    for a in cfg.archives:
        recs = load_manifest(a)
        train_recs += split_records(recs, "train")
        val_recs += split_records(recs, "val")
    return train_recs, val_recs


@dataclass
class ExtraData:
    """Extra data sets: train part (trains), tune part (held out of train: sets the threshold), val
    split (evaluated only: never calibrates, never sets the threshold)."""
    train: list[Record]
    tune: list[Record]
    val: list[Record]
    manifests: frozenset[str]


def load_extra(cfg: TrainConfig) -> ExtraData:
    from training.datasets import split_tune

    tr: list[Record] = []
    tune: list[Record] = []
    val: list[Record] = []
    names: set[str] = set()
    if not cfg.use_real:
        return ExtraData(tr, tune, val, frozenset())
    for m in cfg.extra_manifests:
        if not Path(m).is_file():
            raise FileNotFoundError(f"extra manifest not found: {m}")
        recs = load_manifest(m)
        names.update(r.manifest for r in recs)
        a, b = split_tune(split_records(recs, "train"), cfg.tune_fraction)
        tr += a
        tune += b
        val += split_records(recs, "val")
    return ExtraData(tr, tune, val, frozenset(names))


def load_images(recs: Sequence[Record], size: int, frame_only: Sequence[str], desc: str, progress: bool) -> list[LoadedImage]:
    """Decoded like the runtime; frames of a ``frame_only`` source lose their mask (boxes are not outlines)."""
    from tqdm import tqdm

    out = []
    for r in tqdm(recs, desc=desc, disable=not progress or not recs):
        li = load_record_image(r, size)
        if r.source in frame_only and r.y == 1:
            li = LoadedImage(li.image, None, region=li.mask if li.mask is not None and li.mask.any() else None)
        out.append(li)
    return out


def eval_sets(
    cfg: TrainConfig,
    train: tuple[Sequence[Record], Sequence[LoadedImage]],
    val: tuple[Sequence[Record], Sequence[LoadedImage]],
    extra: ExtraData,
    tune_imgs: Sequence[LoadedImage],
    xval_imgs: Sequence[LoadedImage],
    synth_val: SynthSet | None,
) -> list[EvalSet]:
    """The evaluation sets, by name: real-val, synthetic-val, tune (sets the threshold), extra-val
    (evaluated only) and all-sources (every source and split, train in-sample: the per-source table)."""
    s = cfg.input_size
    (train_recs, train_imgs), (val_recs, val_imgs) = train, val
    out: list[EvalSet] = []
    if val_recs:
        out.append(real_eval_set("real-val", val_recs, val_imgs, s))
    if synth_val is not None and len(synth_val):
        out.append(synth_eval_set(synth_val, s))
    if extra.tune:
        out.append(real_eval_set("tune", extra.tune, tune_imgs, s))
    if extra.val:
        out.append(real_eval_set("extra-val", extra.val, xval_imgs, s))
    if cfg.report_all_sources and (train_recs or val_recs):
        out.append(real_eval_set("all-sources", [*train_recs, *extra.tune, *val_recs, *extra.val],
                                 [*train_imgs, *tune_imgs, *val_imgs, *xval_imgs], s))
    return out


@dataclass
class TrainData:
    """Everything the loop and the evaluation read: real/extra records and their decoded frames,
    the rendered synthetic and composite sets."""
    train_recs: list[Record]
    val_recs: list[Record]
    extra: ExtraData
    train_imgs: list[LoadedImage]
    val_imgs: list[LoadedImage]
    tune_imgs: list[LoadedImage]
    xval_imgs: list[LoadedImage]
    synth: SynthSet | None = None
    synth_val: SynthSet | None = None
    comp: SynthSet | None = None

    def evaluation_sets(self, cfg: TrainConfig) -> list[EvalSet]:
        return eval_sets(cfg, (self.train_recs, self.train_imgs), (self.val_recs, self.val_imgs), self.extra,
                         self.tune_imgs, self.xval_imgs, self.synth_val)


@dataclass
class FitResult:
    steps: int
    steps_per_epoch: int
    train_seconds: float
    history: list[dict[str, float]]
    # with ``ema_decay``: the last step's own weights (the network then holds the average)
    last_step_state: dict[str, Any] | None = None


@dataclass
class Calibrated:
    temperature: float
    cal_sets: list[str]
    choice: calibration.ThresholdChoice
    metrics: dict[str, dict[str, Any]]


def load_training_data(cfg: TrainConfig) -> TrainData:
    """Stage 1: real and extra records decoded like the runtime, synthetic and composite sets rendered
    (or read from the cache)."""
    s = cfg.input_size
    train_recs, val_recs = load_real(cfg)
    extra = load_extra(cfg)
    if cfg.train_on_extra:
        train_recs = train_recs + extra.train
    t0 = time.time()
    fo = cfg.frame_only_sources
    data = TrainData(
        train_recs=train_recs, val_recs=val_recs, extra=extra,
        train_imgs=load_images(train_recs, s, fo, "load train", cfg.progress),
        val_imgs=load_images(val_recs, s, fo, "load val", cfg.progress),
        tune_imgs=load_images(extra.tune, s, fo, "load tune", cfg.progress),
        xval_imgs=load_images(extra.val, s, fo, "load extra val", cfg.progress),
    )
    _log(f"real data: {len(train_recs)} train ({len(extra.train) if cfg.train_on_extra else 0} extra), {len(extra.tune)} tune, {len(val_recs)} val "
         f"+ {len(extra.val)} extra val frames loaded in {time.time() - t0:.1f}s")
    data.synth, data.synth_val = _render_synthetic(cfg)
    data.comp = _render_composites(cfg, train_recs)
    return data


def _render_synthetic(cfg: TrainConfig) -> tuple[SynthSet | None, SynthSet | None]:
    """(training set, held-out set). The held-out set is rendered even without synthetic training
    (then it is used for evaluation only, not for calibration or the threshold)."""
    from tqdm import tqdm

    synth: SynthSet | None = None
    synth_val: SynthSet | None = None
    want_val = cfg.synthetic_val > 0 and (cfg.use_synthetic or synth_available())
    if not ((cfg.use_synthetic and cfg.synthetic > 0) or want_val):
        return None, None
    if not synth_available():
        raise RuntimeError("synthetic data requested but training.synth is not available (use --no-synthetic)")
    t0 = time.time()
    n_syn = cfg.synthetic if cfg.use_synthetic else 0
    with tqdm(total=n_syn + cfg.synthetic_val, desc="render synthetic", disable=not cfg.progress) as bar:
        if n_syn > 0:
            synth = make_synth_set(cfg.synthetic, cfg.seed, cfg.synth_size, 0.5, cfg.gen_workers, cfg.cache_dir, bar.update,
                                   exclude=cfg.synth_exclude, figured=cfg.figured_floors)
        if want_val:
            synth_val = make_synth_set(cfg.synthetic_val, cfg.seed + 7919, cfg.synth_size, 0.5, cfg.gen_workers, cfg.cache_dir, bar.update)
    _log(f"synthetic: {n_syn} train + {cfg.synthetic_val} val rendered/loaded in {time.time() - t0:.1f}s")
    return synth, synth_val


def _render_composites(cfg: TrainConfig, train_recs: Sequence[Record]) -> SynthSet | None:
    """Real liquids (cut along the spills-real polygons) pasted onto clean training frames."""
    if cfg.composites <= 0 or not cfg.use_real:
        return None
    from tqdm import tqdm

    from training.datasets import make_composite_set

    t0 = time.time()
    targets = [r for r in train_recs if r.y == 0]
    with tqdm(total=cfg.composites, desc="render composites", disable=not cfg.progress) as bar:
        sources = [r for r in train_recs if r.source not in cfg.frame_only_sources]
        comp = make_composite_set(sources, targets, cfg.composites, cfg.seed, cfg.synth_size, cfg.gen_workers,
                                  cfg.cache_dir, bar.update)
    _log(f"composites: {len(comp)} real liquids on {len(targets)} clean train frames in {time.time() - t0:.1f}s")
    return comp


def fit(cfg: TrainConfig, net: Any, maker: BatchMaker, n_train: int) -> FitResult:
    """Stage 2: the optimiser loop (AdamW, warm-up then cosine; frame BCE + masked spill-map BCE), or
    the weights of ``cfg.resume`` and its recorded history."""
    import torch
    from tqdm import tqdm

    from training.net import normalise_batch

    spe = cfg.steps_per_epoch or max(1, math.ceil(n_train / cfg.batch_size))
    total = max(1, int(round(spe * cfg.epochs)))
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    head_params = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith(("fc", "map"))]
    bb_params = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith(("fc", "map"))]
    opt = torch.optim.AdamW(
        [{"params": bb_params, "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": head_params, "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    base_lrs = [grp["lr"] for grp in opt.param_groups]

    def lr_factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    history: list[dict[str, float]] = []
    resumed: dict[str, Any] | None = None
    if cfg.resume is not None:
        ck = torch.load(cfg.resume, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["state_dict"])
        resumed = ck.get("card_base", {}).get("training") or {}
        history = [dict(h) for h in resumed.get("history", [])]
        total = int(resumed.get("steps", total))
        _log(f"resumed the trained weights of {cfg.resume} ({total} steps): training skipped")
    pre = Prefetcher(maker.make, 0 if resumed is not None else total)
    # An exponential moving average of the weights (and BatchNorm statistics), torch's own
    # AveragedModel: it smooths the last few hundred steps' noise, which moved unseen-place AUCs
    # between seeds as much as recipe changes did (docs/model.md).
    ema = (torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay),
                                               use_buffers=True)
           if cfg.ema_decay > 0 and resumed is None else None)
    net.train()
    t_train = time.time()
    bar = tqdm(range(0 if resumed is not None else total), desc="train", disable=not cfg.progress)
    run_loss = run_map = 0.0
    for step in bar:
        xs, ys, ms, valid = pre.get()
        for grp, base in zip(opt.param_groups, base_lrs, strict=True):
            grp["lr"] = base * lr_factor(step)
        x = normalise_batch(torch.from_numpy(xs), net)
        logit, mlog = net(x)
        y = torch.from_numpy(ys)
        loss_f = bce(logit, y)
        v = torch.from_numpy(valid)
        per = bce(mlog, torch.from_numpy(ms), reduction="none").mean(dim=(1, 2))
        loss_m = (per * v).sum() / v.sum().clamp(min=1.0)
        loss = loss_f + cfg.map_weight * loss_m
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(net)
        lf, lm = loss_f.item(), loss_m.item()
        run_loss = 0.9 * run_loss + 0.1 * lf if step else lf
        run_map = 0.9 * run_map + 0.1 * lm if step else lm
        bar.set_postfix(frame=f"{run_loss:.3f}", map=f"{run_map:.3f}")
        if (step + 1) % spe == 0 or step + 1 == total:
            history.append({"step": step + 1, "frame_loss": round(run_loss, 4), "map_loss": round(run_map, 4),
                            "elapsed_s": round(time.time() - t_train, 1)})
    train_seconds = time.time() - t_train
    if resumed is not None and resumed.get("train_seconds") is not None:
        train_seconds = float(resumed["train_seconds"])
    last_step_state = None
    if ema is not None:
        last_step_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(ema.module.state_dict())
    if cfg.bn_recompute_batches > 0:
        from training.bn_stats import recompute_bn

        # fresh draws: the batches of the steps after the last one, with the training augmentation
        n_bn = cfg.bn_recompute_batches
        bn_pre = Prefetcher(lambda i: maker.make(total + i)[0], n_bn)
        t_bn = time.time()
        recompute_bn(net, tqdm((bn_pre.get() for _ in range(n_bn)), total=n_bn, desc="BatchNorm statistics",
                               disable=not cfg.progress))
        _log(f"BatchNorm statistics re-estimated on {n_bn} training batches (steps {total}-{total + n_bn - 1}) "
             f"in {time.time() - t_bn:.1f}s")
    net.eval()
    return FitResult(steps=total, steps_per_epoch=spe, train_seconds=train_seconds, history=history,
                     last_step_state=last_step_state)


def calibrate(cfg: TrainConfig, net: Any, evsets: Sequence[EvalSet]) -> Calibrated:
    """Stage 3: temperature scaling on real val + held-out synthetic (each set weighs the same), then
    the threshold rule over every group, and each set's figures at that threshold."""
    logits = {e.name: torch_logits(net, e.images)[0] for e in evsets}
    # without synthetic training, the synthetic set is for evaluation only
    cal_sets = [e for e in evsets if (cfg.use_synthetic or e.name != "synthetic-val") and e.name in ("real-val", "synthetic-val")]
    cal_l = np.concatenate([logits[e.name] for e in cal_sets]) if cal_sets else np.zeros(0)
    cal_y = np.concatenate([e.y for e in cal_sets]) if cal_sets else np.zeros(0)
    # each set weighs the same in the calibration NLL (real val is 90 % spill frames)
    cal_w = np.concatenate([np.full(len(e.y), 1.0 / max(1, len(e.y))) for e in cal_sets]) if cal_sets else None
    temperature = calibration.fit_temperature(cal_l, cal_y, cal_w)
    probs = {name: calibration.sigmoid(lg.astype(np.float64) / temperature) for name, lg in logits.items()}

    choice = pick_threshold(cfg, evsets, probs)
    thr = choice.threshold
    val_metrics = {e.name: group_report(probs[e.name], e, thr) for e in evsets}
    for name, m in val_metrics.items():
        _log(f"{name} @thr={thr:.4f}: recall={m['recall']} precision={m['precision']} fpr={m['fpr']} "
             f"floor_fpr={m['floor_fpr']} auc={m['roc_auc']}")
    return Calibrated(temperature=temperature, cal_sets=[e.name for e in cal_sets], choice=choice, metrics=val_metrics)


def describe(cfg: TrainConfig, data: TrainData, fitted: FitResult, cal: Calibrated) -> TrainedModel:
    """The card's training part: data, calibration, threshold rule, figures, recipe."""
    import torch

    from training.net import BACKBONE_SOURCES

    synth, synth_val = data.synth, data.synth_val
    choice = cal.choice
    data_summary = DataSummary(
        real_train=ManifestSummary.model_validate(summarise(data.train_recs)),
        real_val=ManifestSummary.model_validate(summarise(data.val_recs)),
        synthetic_train=SynthSummary.model_validate(synth.summary()) if synth is not None else None,
        synthetic_val=SynthSummary.model_validate(synth_val.summary()) if synth_val is not None else None,
        batch_mix=BatchMix(synth_fraction=cfg.synth_fraction if (synth is not None and data.train_recs) else (1.0 if synth is not None else 0.0),
                           real_clean_fraction=cfg.real_clean_fraction, floor_share_of_clean=cfg.floor_share_of_clean),
    )
    return TrainedModel(
        input_size=cfg.input_size,
        map_size=cfg.input_size // 16,
        threshold=choice.threshold,
        map_threshold=cfg.map_threshold,
        preliminary=cfg.preliminary,
        note=cfg.note,
        backbone=BACKBONE_SOURCES[cfg.backbone],
        calibration=Calibration(method="temperature scaling (in-graph)", temperature=cal.temperature,
                                fitted_on=cal.cal_sets, weighting="each set weighs the same"),
        threshold_choice=ThresholdChoice(rule=choice.rule, target_recall=cfg.target_recall, max_floor_fpr=cfg.max_floor_fpr,
                                         recall_thresholds=choice.recall_thresholds, floor_threshold=choice.floor_threshold,
                                         fpr_caps=choice.caps, max_synth_clean_fpr=cfg.max_synth_clean_fpr, notes=choice.notes),
        data=data_summary,
        metrics=Metrics(torch_fp32={k: SetMetrics.model_validate(v) for k, v in cal.metrics.items()}),
        training=Training(settings=cfg.to_json(), seed=cfg.seed, steps=fitted.steps, steps_per_epoch=fitted.steps_per_epoch,
                          train_seconds=round(fitted.train_seconds, 1), history=[HistoryPoint.model_validate(h) for h in fitted.history],
                          torch=torch.__version__, python=platform.python_version(), machine=platform.machine()),
    )


def train(cfg: TrainConfig) -> ModelCard:
    """Train, calibrate, choose the threshold, export. Returns the fp32 card.

    Stages: data (:func:`load_training_data`) -> fit (:func:`fit`) -> calibration and threshold
    (:func:`calibrate`) -> card (:func:`describe`) -> export (``model.pt``, ONNX fp32 + int8, cards)."""
    import torch

    from training.export import export_all
    from training.net import SpillNet

    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_training_data(cfg)
    maker = BatchMaker(cfg, data.train_recs, data.train_imgs, data.synth, data.comp, data.extra.manifests)
    n_train = len(data.train_recs) + (len(data.synth) if data.synth is not None else 0) + (len(data.comp) if data.comp is not None else 0)
    net = SpillNet(cfg.input_size, pretrained=cfg.pretrained, freeze_blocks=cfg.freeze_blocks, normalisation=cfg.normalisation,
                   backbone=cfg.backbone)
    fitted = fit(cfg, net, maker, n_train)
    evsets = data.evaluation_sets(cfg)
    cal = calibrate(cfg, net, evsets)
    trained = describe(cfg, data, fitted, cal)

    torch.save({"state_dict": net.state_dict(), "config": cfg.to_json(), "temperature": cal.temperature,
                "card_base": trained.model_dump(mode="json")}, out / "model.pt")
    if fitted.last_step_state is not None:
        # the same run without the average, for a paired comparison: `spillwatch train --resume <this>`
        torch.save({"state_dict": fitted.last_step_state, "config": cfg.to_json(), "temperature": cal.temperature,
                    "card_base": trained.model_dump(mode="json")}, out / "model-last-step.pt")
    calib, check = _calib_images(maker, evsets, cfg)
    # the held-out synthetic frames are harder than training frames: they also judge the int8 model
    check = np.concatenate([check] + [e.images for e in evsets if e.name == "synthetic-val"])
    cards = export_all(net, cal.temperature, trained, out, calib_images=calib, check_images=check,
                       parity_images=(evsets[0].images if evsets else None), int8=cfg.export_int8,
                       eval_sets=evsets, finalise=lambda tm: _finalise(tm, t_start))
    (out / "train_summary.json").write_text(cards["fp32"].to_json())
    return cards["fp32"]


def _finalise(trained: TrainedModel, t_start: float) -> TrainedModel:
    assert trained.training is not None
    tr = trained.training.model_copy(update={"total_seconds": round(time.time() - t_start, 1)})
    return trained.model_copy(update={"training": tr})


def _calib_images(maker: BatchMaker, evsets: Sequence[EvalSet], cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(calibration frames, check frames) for int8, disjoint: real training frames with the runtime
    preprocessing (synthetic ones when there are too few real ones). Never val frames."""
    s = cfg.input_size
    rng = np.random.default_rng([cfg.seed, 424242])
    frames: list[np.ndarray] = []
    want = cfg.calib_frames + cfg.check_frames
    if maker.imgs:
        idx = rng.permutation(len(maker.imgs))[:want]
        frames += [runtime_input(maker.imgs[i].image, s) for i in idx]
    if len(frames) < want and maker.synth is not None:
        idx = rng.permutation(len(maker.synth))[: want - len(frames)]
        frames += [runtime_input(maker.synth.images[i], s) for i in idx]
    if not frames:
        x = evsets[0].images if evsets else np.zeros((1, s, s, 3), np.uint8)
        return x[: cfg.calib_frames], x[:0]
    order = rng.permutation(len(frames))  # mix real and synthetic into both parts
    arr = np.stack(frames)[order]
    n_cal = min(cfg.calib_frames, max(1, len(arr) // 2)) if len(arr) < want else cfg.calib_frames
    return arr[:n_cal], arr[n_cal:]
