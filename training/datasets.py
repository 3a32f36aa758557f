"""Training data: manifests in the shared format (real frames, archive exports) and the synthetic
staged-spill generator.

Manifest format (``manifest.jsonl``, one JSON object a line): ``file`` (path relative to the
manifest's folder), ``label`` (``spill``/``clean``), ``polygons`` (list of ``[[x, y], ...]`` in
pixels of the stored file), optional ``split`` (``train``/``val``; missing -> train), ``source``,
``sequence``, ``liquids``. A spill frame without polygons is a frame-level label only: its map loss
is masked out.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spillwatch.model import decode_jpeg
from spillwatch.settings import REPO_ROOT

#: The real DEV set, relative to the repository root (CI has ../shared beside the clone).
DEFAULT_REAL_MANIFEST_REL = "../shared/data/spills-real/manifest.jsonl"
REAL_MANIFEST_ENV = "SPILLWATCH_REAL_MANIFEST"
FLOOR_SOURCE = "indoor-floors"


def default_real_manifest() -> Path:
    """``$SPILLWATCH_REAL_MANIFEST`` or ``<repo>/../shared/data/spills-real/manifest.jsonl``."""
    env = os.environ.get(REAL_MANIFEST_ENV)
    return Path(env) if env else (REPO_ROOT / DEFAULT_REAL_MANIFEST_REL).resolve()


EXTRA_DATASETS = ("interiors", "wet-floors")


def default_extra_manifests() -> list[Path]:
    """The extra data sets of the data root (``$SPILLWATCH_DATA_ROOT`` or ``<repo>/../shared/data``) that exist."""
    from spillwatch.model_card import data_root

    return [p for p in (data_root() / d / "manifest.jsonl" for d in EXTRA_DATASETS) if p.is_file()]


class ManifestError(ValueError):
    """A manifest line is malformed."""


@dataclass(frozen=True)
class Record:
    path: Path
    label: str                      # "spill" | "clean"
    polygons: tuple[tuple[tuple[float, float], ...], ...]
    split: str = "train"
    source: str = ""
    sequence: str | None = None
    liquids: tuple[str, ...] = ()
    manifest: str = ""

    @property
    def y(self) -> int:
        return 1 if self.label == "spill" else 0

    @property
    def has_mask(self) -> bool:
        """The map target is known: clean frames (all zero) and spill frames with polygons."""
        return self.label == "clean" or bool(self.polygons)

    @property
    def is_floor(self) -> bool:
        return self.source == FLOOR_SOURCE

    @property
    def source_split(self) -> str:
        """Per-source evaluation slice: ``<source>/<split>`` (e.g. ``wet-floor-stock/val``)."""
        return f"{self.source or '-'}/{self.split}"

    @property
    def dataset(self) -> str:
        """The name of the manifest's folder (``spills-real``, ``wet-floors``): one data set."""
        return Path(self.manifest).parent.name if self.manifest else "-"

    @property
    def group(self) -> str:
        """Evaluation group: liquid(s) for spills, floor photos / same-scene for clean frames."""
        if self.label == "spill":
            return "spill:" + ("+".join(self.liquids) if self.liquids else "unlabelled")
        return "clean:floor-photo" if self.is_floor else "clean:scene"


def parse_record(obj: dict[str, Any], base: Path, manifest: str = "") -> Record:
    try:
        label = str(obj["label"])
        file = str(obj["file"])
    except KeyError as exc:
        raise ManifestError(f"missing key {exc}") from exc
    if label not in ("spill", "clean"):
        raise ManifestError(f"bad label {label!r}")
    polys = tuple(tuple((float(x), float(y)) for x, y in poly) for poly in (obj.get("polygons") or []) if len(poly) >= 3)
    return Record(
        path=(base / file),
        label=label,
        polygons=polys,
        split=str(obj.get("split") or "train"),
        source=str(obj.get("source") or ""),
        sequence=obj.get("sequence"),
        liquids=tuple(obj.get("liquids") or ()),
        manifest=manifest,
    )


def load_manifest(path: Path | str) -> list[Record]:
    """All records of one manifest; image paths are resolved against the manifest's folder."""
    p = Path(path)
    base = p.parent
    out: list[Record] = []
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(parse_record(json.loads(line), base, manifest=str(p)))
            except (ManifestError, json.JSONDecodeError, TypeError, ValueError) as exc:
                raise ManifestError(f"{p}:{lineno}: {exc}") from exc
    return out


def polygons_mask(polygons: Iterable[Sequence[Sequence[float]]], src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons given in pixels of a ``src_wh`` image onto a ``dst_wh`` uint8 {0,1} mask."""
    w, h = dst_wh
    sx, sy = w / src_wh[0], h / src_wh[1]
    mask = np.zeros((h, w), np.uint8)
    pts = [np.round(np.asarray(p, np.float64) * (sx, sy)).astype(np.int32) for p in polygons]
    if pts:
        cv2.fillPoly(mask, pts, 1)
    return mask


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    from spillwatch.model import _jpeg_size

    return _jpeg_size(data)


@dataclass
class LoadedImage:
    image: np.ndarray         # BGR, reduced decode (what the runtime decodes)
    mask: np.ndarray | None   # uint8 {0,1} same size; None = unknown (spill without polygons)
    region: np.ndarray | None = None  # a frame-only source's boxes (uint8 {0,1}): where its liquid is, roughly; centres close-ups, never a map target


def load_record_image(rec: Record, target: int) -> LoadedImage:
    """Decode like the runtime (reduced JPEG decoding for ``target``) and rasterise the polygons at the
    decoded size. Polygons are in pixels of the stored file."""
    data = rec.path.read_bytes()
    img = decode_jpeg(data, target=target)
    full = jpeg_size(data)
    if full is None:
        full_img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if full_img is None:
            raise ValueError(f"{rec.path}: not a decodable image")
        full = (full_img.shape[1], full_img.shape[0])
    h, w = img.shape[:2]
    if rec.label == "clean":
        mask: np.ndarray | None = np.zeros((h, w), np.uint8)
    elif rec.polygons:
        mask = polygons_mask(rec.polygons, full, (w, h))
    else:
        mask = None
    return LoadedImage(img, mask)


def split_records(records: Sequence[Record], split: str) -> list[Record]:
    return [r for r in records if r.split == split]


def summarise(records: Sequence[Record]) -> dict[str, Any]:
    """Counts for the model card: by split/source/label, spill frames with masks, liquids."""
    by = Counter(f"{r.split}/{r.source or '-'}/{r.label}" for r in records)
    return {
        "n": len(records),
        "by_split_source_label": dict(sorted(by.items())),
        "spill_with_polygons": sum(1 for r in records if r.label == "spill" and r.polygons),
        "spill_without_polygons": sum(1 for r in records if r.label == "spill" and not r.polygons),
        "liquids": dict(sorted(Counter("+".join(r.liquids) or "-" for r in records if r.label == "spill").items())),
        "manifests": sorted({r.manifest for r in records}),
    }


# ------------------------------------------------------------------ synthetic
@dataclass
class SynthSet:
    images: np.ndarray          # uint8 [N, H, W, 3] BGR
    masks: np.ndarray           # uint8 [N, H, W] {0,1}
    labels: np.ndarray          # int8 [N] 1 = spill
    metas: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    size: int = 0
    p_spill: float = 0.5
    generator: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def summary(self) -> dict[str, Any]:
        liq = Counter(str(m.get("liquid", "-")) for m, y in zip(self.metas, self.labels, strict=True) if y == 1)
        return {"n": len(self), "seed": self.seed, "size": self.size, "p_spill": self.p_spill,
                "spill": int(self.labels.sum()), "clean": int(len(self) - self.labels.sum()),
                "generator": self.generator, "liquids": dict(sorted(liq.items()))}


def _gen_one(args: tuple[int, int, float, tuple[str, ...], float]) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    from training.synth import generate_sample

    seed, size, p_spill, exclude, figured = args
    kw: dict[str, Any] = {"exclude_distractors": exclude} if exclude else {}
    s = generate_sample(seed, size=size, p_spill=p_spill, figured_floors=figured, **kw)
    meta = {k: v for k, v in (s.meta or {}).items() if isinstance(v, (str, int, float, bool)) or v is None}
    return s.image, s.mask.astype(np.uint8), int(s.label == "spill"), meta


def generator_fingerprint() -> str:
    """Hash of the generator's source files: a cache made by another generator version is not reused."""
    import training.synth as synth_pkg

    h = hashlib.sha256()
    root = Path(synth_pkg.__file__).parent
    for f in sorted(root.rglob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def make_synth_set(n: int, seed: int, size: int, p_spill: float = 0.5, workers: int = 2,
                   cache_dir: Path | None = None, progress: Callable[[int], None] | None = None,
                   exclude: Sequence[str] = (), figured: float = 0.0) -> SynthSet:
    """Render ``n`` samples with seeds ``seed*1_000_003 + i`` (deterministic), optionally cached as .npz.
    ``exclude``: distractors the generator leaves out (ablation); ``figured``: the chance that a wooden
    floor, desk or carpet gets knots or a motif (training/synth/figures.py; 0: the plain generator)."""
    fp = generator_fingerprint()
    ex = tuple(sorted(exclude))
    key = (f"synth-{fp}-s{seed}-n{n}-z{size}-p{p_spill:g}" + (f"-x{'+'.join(ex)}" if ex else "")
           + (f"-f{figured:g}" if figured > 0 else ""))
    if cache_dir is not None:
        cp = Path(cache_dir) / f"{key}.npz"
        if cp.is_file():
            z = np.load(cp, allow_pickle=False)
            cached_metas = json.loads(str(z["metas"]))
            return SynthSet(z["images"], z["masks"], z["labels"], cached_metas, seed, size, p_spill, fp)
    seeds = [seed * 1_000_003 + i for i in range(n)]
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    labels = np.zeros(n, np.int8)
    metas: list[dict[str, Any]] = [{} for _ in range(n)]
    args = [(s, size, p_spill, ex, figured) for s in seeds]

    def put(i: int, res: tuple[np.ndarray, np.ndarray, int, dict[str, Any]]) -> None:
        img, mk, y, meta = res
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            mk = cv2.resize(mk, (size, size), interpolation=cv2.INTER_NEAREST)
        images[i], masks[i], labels[i], metas[i] = img, mk, y, meta
        if progress:
            progress(1)

    if workers > 1 and n > 8:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, res in enumerate(pool.map(_gen_one, args, chunksize=16)):
                put(i, res)
    else:
        for i, a in enumerate(args):
            put(i, _gen_one(a))
    out = SynthSet(images, masks, labels, metas, seed, size, p_spill, fp)
    if cache_dir is not None:
        _save_cached(Path(cache_dir), key, out)
    return out


def _save_cached(cache_dir: Path, key: str, data: SynthSet) -> None:
    """Write a rendered set to ``<cache_dir>/<key>.npz`` atomically (a temporary file, then a rename)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f"{key}.tmp.npz"
    np.savez(tmp, images=data.images, masks=data.masks, labels=data.labels, metas=np.array(json.dumps(data.metas)))
    os.replace(tmp, cache_dir / f"{key}.npz")


def synth_available() -> bool:
    try:
        import training.synth  # noqa: F401
        from training.synth import generate_sample  # noqa: F401
    except ImportError:
        return False
    return True


def mask_polygons(mask: np.ndarray, min_area: float = 4.0) -> list[list[list[float]]]:
    """Outer contours of a {0,1} mask as polygons (pixels), the manifest's format."""
    cnts, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[[float(x), float(y)] for x, y in c.reshape(-1, 2)] for c in cnts if len(c) >= 3 and cv2.contourArea(c) >= min_area]


def write_synthetic_manifest(folder: Path, n: int, seed: int, size: tuple[int, int] = (480, 360), p_spill: float = 0.5,
                             split: str = "val", quality: int = 85) -> Path:
    """Render ``n`` generator samples as JPEG frames + ``manifest.jsonl`` in the shared format (an
    evaluation set for the generator's domain, and test fixtures). Returns the manifest path."""
    from training.synth import generate_sample

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    w, h = size
    for i in range(n):
        s = generate_sample(seed * 1_000_003 + i, size=max(w, h) // 2, p_spill=p_spill)
        img = cv2.resize(s.image, (w, h), interpolation=cv2.INTER_LINEAR)
        mk = cv2.resize(s.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        name = f"images/synth_{seed}_{i:05d}.jpg"
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        liquid = (s.meta or {}).get("liquid")
        lines.append(json.dumps({
            "file": name, "label": s.label, "source": "synthetic", "sequence": None,
            "liquids": [liquid] if (liquid and s.label == "spill") else [],
            "polygons": mask_polygons(mk) if s.label == "spill" else [], "split": split,
        }))
    mp = folder / "manifest.jsonl"
    mp.write_text("\n".join(lines) + "\n")
    return mp


# ------------------------------------------------------------------ extra sources and composites
def holdout_part(rec: Record, fraction: float, salt: str = "tune") -> bool:
    """True for the records of a train split that are held out for the threshold ("tune" part): a
    stable hash of the file name (and sequence, so a capture sequence is never cut in two)."""
    if fraction <= 0:
        return False
    key = f"{salt}:{rec.sequence or rec.path.name}"
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def split_tune(records: Sequence[Record], fraction: float) -> tuple[list[Record], list[Record]]:
    """(train part, held-out tune part) of a train split. Tune records keep ``split='tune'`` so every
    report shows them as their own slice."""
    from dataclasses import replace

    train_part: list[Record] = []
    tune: list[Record] = []
    for r in records:
        if holdout_part(r, fraction):
            tune.append(replace(r, split="tune"))
        else:
            train_part.append(r)
    return train_part, tune


def _composite_one(args: tuple[int, Record, Record, int]) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]] | None:
    from training.composite import composite_spill

    seed, src, dst, size = args
    rng = np.random.default_rng(seed)
    s_img = load_record_image(src, size)
    t_img = load_record_image(dst, size)
    if s_img.mask is None:
        return None
    res = composite_spill(rng, s_img.image, s_img.mask, t_img.image)
    if res is None:
        return None
    img, mk = res
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    mk = cv2.resize(mk, (size, size), interpolation=cv2.INTER_NEAREST)
    meta = {"liquid": "+".join(src.liquids) or "real", "target": dst.source or "-",
            "source_file": src.path.name, "target_file": dst.path.name}
    return img, mk.astype(np.uint8), 1, meta


def composite_fingerprint() -> str:
    import training.composite as comp

    return hashlib.sha256(Path(comp.__file__).read_bytes()).hexdigest()[:16]


def make_composite_set(sources: Sequence[Record], targets: Sequence[Record], n: int, seed: int, size: int,
                       workers: int = 2, cache_dir: Path | None = None,
                       progress: Callable[[int], None] | None = None) -> SynthSet:
    """``n`` real liquids (``sources``: spill records with polygons) pasted onto clean ``targets``
    (training/composite.py), rendered in a spawned process pool, cached as .npz. Deterministic in
    (sources, targets, n, seed, size)."""
    import multiprocessing

    srcs = [r for r in sources if r.label == "spill" and r.polygons]
    tgts = [r for r in targets if r.label == "clean"]
    if not srcs or not tgts or n <= 0:
        return SynthSet(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), np.uint8), np.zeros(0, np.int8), [], seed, size, 1.0, "composite")
    h = hashlib.sha256(composite_fingerprint().encode())
    for r in list(srcs) + list(tgts):
        h.update(str(r.path.name).encode())
        h.update(str(r.polygons).encode())
    fp = h.hexdigest()[:16]
    key = f"composite-{fp}-s{seed}-n{n}-z{size}"
    if cache_dir is not None:
        cp = Path(cache_dir) / f"{key}.npz"
        if cp.is_file():
            z = np.load(cp, allow_pickle=False)
            return SynthSet(z["images"], z["masks"], z["labels"], json.loads(str(z["metas"])), seed, size, 1.0, f"composite-{fp}")
    rng = np.random.default_rng([seed, 77])
    args = [(seed * 1_000_003 + i, srcs[int(rng.integers(len(srcs)))], tgts[int(rng.integers(len(tgts)))], size)
            for i in range(n)]
    results: list[tuple[np.ndarray, np.ndarray, int, dict[str, Any]] | None]
    if workers > 1 and n > 8:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            results = []
            for res in ex.map(_composite_one, args, chunksize=16):
                results.append(res)
                if progress:
                    progress(1)
    else:
        results = []
        for a in args:
            results.append(_composite_one(a))
            if progress:
                progress(1)
    ok = [r for r in results if r is not None]
    images = np.stack([r[0] for r in ok]) if ok else np.zeros((0, size, size, 3), np.uint8)
    masks = np.stack([r[1] for r in ok]) if ok else np.zeros((0, size, size), np.uint8)
    labels = np.ones(len(ok), np.int8)
    metas = [r[3] for r in ok]
    out = SynthSet(images, masks, labels, metas, seed, size, 1.0, f"composite-{fp}")
    if cache_dir is not None:
        _save_cached(Path(cache_dir), key, out)
    return out
