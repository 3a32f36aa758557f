"""A staged-spill scene: camera geometry, room, lighting, distractors and the liquid, and its renderer.

`Scene.build` samples everything that is static for a camera (floor, view, lights, static
distractors, the liquid's shape field); `Scene.render` draws one frame for a given liquid level
and set of people, applies the camera (lens, blur, noise, timestamp, JPEG) and returns the BGR
uint8 image and the spill mask of exactly the pixels the liquid was drawn on (after occlusion and
lens distortion; the thin burnt-in timestamp may cross it). Stills (`generate_sample`) and clips (`render_clip`) both use it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from training.synth import distractors as dis
from training.synth import noise
from training.synth.fastops import rep3, tint3
from training.synth.figures import FIGURED, figure_floor
from training.synth.floors import Floor, draw_markings, make_floor
from training.synth.liquids import SHAPE_WEIGHTS, SHAPES, Liquid, alpha_from_field, composite, pick_liquid, shape_field

LIGHTINGS: tuple[str, ...] = ("fluorescent", "daylight", "dim", "night_ir", "flicker")
LIGHTING_WEIGHTS = np.array([0.35, 0.25, 0.15, 0.12, 0.13])
DISTRACTORS: tuple[str, ...] = ("shadow", "glare", "window", "stain", "markings", "cable", "pallet", "person", "sign", "object")
_WALLS = [(0.78, 0.84, 0.86), (0.7, 0.8, 0.85), (0.6, 0.62, 0.62), (0.75, 0.7, 0.6), (0.55, 0.6, 0.5), (0.8, 0.8, 0.8)]
_FURNITURE = [(0.15, 0.45, 0.75), (0.45, 0.35, 0.15), (0.2, 0.2, 0.2), (0.6, 0.6, 0.6), (0.2, 0.3, 0.45)]


@dataclass
class Camera:
    lens_k: float
    blur: float
    motion: int
    noise: float
    jpeg: int  # 0 = none
    stamp: str | None  # "tr", "tl", "bl" or None
    ir: bool
    banding: float
    colour: tuple[float, float, float, float, float] | None = None  # saturation, gamma, white balance B, G, R


@dataclass
class Scene:
    W: int
    H: int
    seed: int
    view: str
    floor: Floor
    lighting: str
    camera: Camera
    horizon: np.ndarray  # line (a, b, c): a x + b y + c = 0 in the image
    floor_mask: np.ndarray  # HxW bool
    light: np.ndarray  # HxWx3 illumination
    lit_floor: np.ndarray  # lit room without reflections
    base: np.ndarray  # lit room with dry reflections and glare (what a clean frame shows)
    env_sharp: np.ndarray
    fresnel: np.ndarray
    spec: np.ndarray
    shadow: np.ndarray  # HxW static shadow darkness 0..1
    occ: np.ndarray  # HxW static occluders (signs, standing people) alpha
    occ_col: np.ndarray
    shadow_dir: tuple[float, float]
    liquid: Liquid | None = None
    liquid_params: dict = field(default_factory=dict)
    liquid_field: np.ndarray | None = None  # HxW warped field, liquid where >= level
    shape: str | None = None
    distractors: list[str] = field(default_factory=list)
    lens_maps: tuple[np.ndarray, np.ndarray] | None = None
    liquid_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, y1, x0, x1 where the field can reach 0

    # ------------------------------------------------------------------ geometry helpers
    def person_height(self, x: float, y: float, ratio: float) -> float:
        a, b, c = self.horizon
        yh = -(a * x + c) / b if abs(b) > 1e-9 else -1e9
        return float(np.clip(ratio * (y - yh), 0.12 * self.H, 0.7 * self.H))

    def random_floor_point(self, rng: np.random.Generator, y_lo: float = 0.1, y_hi: float = 0.97) -> tuple[float, float]:
        rows = np.flatnonzero(self.floor_mask[:, self.W // 2])
        top = int(rows[0]) if len(rows) else 0
        lo = top + y_lo * (self.H - top)
        hi = top + y_hi * (self.H - top)
        for _ in range(20):
            x = rng.uniform(0.05, 0.95) * self.W
            y = rng.uniform(lo, hi)
            if self.floor_mask[int(min(y, self.H - 1)), int(x)]:
                return float(x), float(y)
        return self.W / 2, (lo + hi) / 2

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        level: float | None = 0.0,
        people: list[dis.Person] | tuple = (),
        gain: float = 1.0,
        stamp_text: str | None = None,
        frame_seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame: BGR uint8 image and uint8 {0,1} spill mask. level=None draws no liquid."""
        H, W = self.H, self.W
        rng = np.random.default_rng(frame_seed)
        img = self.base.copy()
        alpha: np.ndarray = np.zeros((H, W), np.float32)
        if self.liquid is not None and self.liquid_field is not None and level is not None:
            y0, y1, x0, x1 = self.liquid_box
            alpha[y0:y1, x0:x1] = alpha_from_field(self.liquid_field[y0:y1, x0:x1], level)
            alpha[~self.floor_mask] = 0
            img = composite(img, self.lit_floor, alpha, self.liquid, self.liquid_params, self.env_sharp,
                            self.fresnel, self.spec, self.light, self.seed * 7 + 1)
        shadow = self.shadow
        occ, occ_col = self.occ, self.occ_col
        if people:
            shadow = shadow.copy()
            occ, occ_col = occ.copy(), occ_col.copy()
            for p in people:
                dis.draw_person_shadow(p, shadow, self.shadow_dir, 0.45)
            for p in sorted(people, key=lambda q: q.y):
                dis.draw_person(p, occ, occ_col)
        if shadow.any():
            sh = noise.blur(shadow, max(W, H) / 120)
            img = img * rep3(1 - sh)
        if occ.any():
            img = img + (occ_col * self.light - img) * rep3(occ)
            alpha = alpha * (1 - occ)
        cam = self.camera
        if gain != 1.0:
            img = img * gain
        if cam.banding > 0:
            yy = np.arange(H, dtype=np.float32)
            band = (1 + cam.banding * np.sin(yy / H * np.pi * rng.uniform(3, 8) + rng.uniform(0, 6.3))).astype(np.float32)
            img = img * rep3(np.repeat(band[:, None], W, axis=1))
        if cam.ir:
            img = rep3(cv2.transform(img, np.array([[0.2, 0.5, 0.3]], np.float32)))
        elif cam.colour is not None:  # camera colour pipeline: saturation, white balance, gamma
            sat, _, wb_b, wb_g, wb_r = cam.colour
            lum = np.array([[0.114, 0.587, 0.299]] * 3, np.float32)
            m = np.diag(np.array([wb_b, wb_g, wb_r], np.float32)) @ (sat * np.eye(3, dtype=np.float32) + (1 - sat) * lum)
            img = cv2.transform(img, m.astype(np.float32))
        if self.lens_maps is not None:
            mx, my = self.lens_maps
            img = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            alpha = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if cam.blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), cam.blur)
        if cam.motion > 1:
            k = np.zeros((cam.motion, cam.motion), np.float32)
            k[cam.motion // 2, :] = 1.0 / cam.motion
            img = cv2.filter2D(img, -1, k)
        if cam.noise > 0:
            n = noise.white(rng, H, W)
            img = img + rep3(cam.noise * n) if cam.ir else img + cam.noise * cv2.merge((n, noise.white(rng, H, W), noise.white(rng, H, W)))
        out: np.ndarray = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        if cam.colour is not None and cam.colour[1] != 1.0:
            out = cv2.LUT(out, _gamma_lut(round(cam.colour[1], 2)))
        # the mask is the support of the drawn liquid: every pixel it contributes to (its 1-px
        # anti-aliased rim included), after occlusion and lens distortion
        mask = (alpha > 0).astype(np.uint8)
        if cam.stamp and stamp_text:
            fs = W / 640 * 0.55
            th = max(1, int(round(W / 640 * 1.5)))
            (tw, tht), _ = cv2.getTextSize(stamp_text, cv2.FONT_HERSHEY_SIMPLEX, fs, th)
            margin = int(W * 0.01) + 2
            org = {"tr": (W - tw - margin, tht + margin), "tl": (margin, tht + margin), "bl": (margin, H - margin)}[cam.stamp]
            cv2.putText(out, stamp_text, org, cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), th + 2, cv2.LINE_AA)
            cv2.putText(out, stamp_text, org, cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), th, cv2.LINE_AA)
        if cam.jpeg:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg])
            decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            assert decoded is not None  # we just encoded it
            out = decoded
        return out, mask

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        seed: int,
        W: int,
        H: int,
        *,
        spill: bool,
        floor: str | None = None,
        liquid: str | None = None,
        shape: str | None = None,
        view: str | None = None,
        lighting: str | None = None,
        distractors: list[str] | None = None,
        hard_negatives: bool = True,
        clip_mode: bool = False,
        liquid_at: tuple[float, float] | None = None,
        liquid_radius: float | None = None,
        exclude_distractors: tuple[str, ...] = (),
        figured_floors: float = 0.0,
    ) -> Scene:
        """``liquid_at`` (x, y as fractions of the image) and ``liquid_radius`` (fraction of the
        width) pin where the liquid lies; the random stream is consumed as without them, so the
        rest of the scene stays the same. ``figured_floors``: the chance that a wooden floor, desk or
        carpet gets knots or a motif (training/synth/figures.py); at 0 no random number is drawn for
        it, so every scene is what it was without the option."""
        rng = np.random.default_rng(seed)
        scale = max(W, H) / 256.0
        T = int(0.9 * max(W, H))
        fl = make_floor(rng, T, floor)
        albedo = fl.albedo
        figure: str | None = None
        if figured_floors > 0 and fl.name in FIGURED and rng.random() < figured_floors:
            figure = figure_floor(rng, fl.name, albedo)
        view = view or ("oblique" if rng.random() < 0.55 else "ceiling")
        lighting = lighting or LIGHTINGS[int(rng.choice(len(LIGHTINGS), p=LIGHTING_WEIGHTS))]

        # ---- which distractors
        if distractors is None:
            chosen: list[str] = []
            probs = {"shadow": 0.45, "glare": 0.4, "stain": 0.3, "markings": 0.25, "cable": 0.2,
                     "pallet": 0.1, "person": 0.3, "sign": 0.15, "window": 0.2}
            if not spill and hard_negatives:
                # clean frames carry more look-alikes (hard negatives); people, signs, cables, pallets and
                # objects keep the same rate in both classes so that clutter itself is no cue for "clean"
                probs = {k: (min(0.9, v * 1.8) if k in ("shadow", "glare", "stain", "markings", "window") else v) for k, v in probs.items()}
            probs = {k: v for k, v in probs.items() if k not in exclude_distractors}
            for k, p in probs.items():
                if rng.random() < p:
                    chosen.append(k)
            hard = [k for k in ("shadow", "glare", "stain", "window") if k not in exclude_distractors]
            if not spill and hard_negatives and hard and not (set(hard) & set(chosen)):
                chosen.append(hard[int(rng.integers(len(hard)))])
        else:
            chosen = list(distractors)
        if figure is not None:
            chosen.append(figure)
        if fl.name == "epoxy" and rng.random() < 0.7 and "markings" not in chosen:
            chosen.append("markings")
        if fl.name == "desk":  # a table top: no people, pallets, signs or painted lines standing on it
            chosen = [c for c in chosen if c not in ("person", "pallet", "sign", "markings")]

        # ---- floor-plane distractors (before the warp)
        if "markings" in chosen:
            for _ in range(int(rng.integers(1, 3))):
                draw_markings(rng, albedo)
        if "pallet" in chosen:
            dis.draw_pallet(rng, albedo, tuple(rng.uniform(0.2, 0.8, 2) * T), T * rng.uniform(0.15, 0.3))

        # ---- camera geometry: floor texture (TxT) -> image homography
        src = np.array([[0, 0], [T, 0], [T, T], [0, T]], np.float32)
        if view == "oblique":
            yw = H * rng.uniform(0.12, 0.5)
            tw = W * rng.uniform(1.0, 2.2)
            bw = tw * rng.uniform(2.5, 5.0)
            yb = H * 1.05
        else:
            yw = -H * rng.uniform(0.0, 0.35)
            tw = W * rng.uniform(1.1, 1.6)
            bw = tw * rng.uniform(1.15, 1.8)
            yb = H * 1.08
        cx = W / 2 + rng.uniform(-0.15, 0.15) * W
        dst = np.array([[cx - tw / 2, yw], [cx + tw / 2, yw], [cx + bw / 2, yb], [cx - bw / 2, yb]], np.float32)
        roll = np.radians(rng.uniform(-7, 7) if view == "oblique" else rng.uniform(-25, 25))
        c, s = np.cos(roll), np.sin(roll)
        ctr = np.array([W / 2, H / 2], np.float32)
        dst = (dst - ctr) @ np.array([[c, s], [-s, c]], np.float32) + ctr
        Hm = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
        horizon = np.linalg.inv(Hm).T @ np.array([0.0, 0.0, 1.0])
        floor_img = cv2.warpPerspective(albedo, Hm, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yy, xx = _grid(H, W)
        if view == "oblique":
            (x1, y1), (x2, y2) = dst[0], dst[1]
            yline = y1 + (xx[0] - x1) * (y2 - y1) / (x2 - x1)
            floor_mask = yy >= yline[None, :]
        else:
            yline = np.full(W, -1e6, np.float32)
            floor_mask = np.ones((H, W), bool)

        # ---- the room above the floor (wall with door/cabinets) and the ceiling lights
        wall_col = np.array(_WALLS[rng.integers(len(_WALLS))], np.float32) * rng.uniform(0.8, 1.1)
        if view == "oblique":
            lh, lw = max(4, H // 4), max(4, W // 4)
            wl = 1 + 0.04 * noise.fbm(rng, lh, lw, 4, 2) - 0.15 * (np.arange(lh, dtype=np.float32)[:, None] / lh)
            wall = np.clip(tint3(rep3(cv2.resize(wl, (W, H), interpolation=cv2.INTER_LINEAR)), wall_col), 0, 1)
            base_y = yline
            for _ in range(int(rng.integers(0, 4))):
                fx = rng.uniform(0, W)
                fw = W * rng.uniform(0.08, 0.3)
                fh = H * rng.uniform(0.15, 0.6)
                fc = np.array(_FURNITURE[rng.integers(len(_FURNITURE))], np.float32) * rng.uniform(0.8, 1.2)
                by = base_y[int(np.clip(fx, 0, W - 1))]
                cv2.rectangle(wall, (int(fx), int(by - fh)), (int(fx + fw), int(by + 2)), tuple(float(v) for v in fc), -1)
                cv2.rectangle(wall, (int(fx), int(by - fh)), (int(fx + fw), int(by + 2)), tuple(float(v) * 0.6 for v in fc), max(1, int(scale)))
            bb = max(1, int(H * rng.uniform(0.008, 0.025)))
            bbc = tuple(float(v) for v in (wall_col * rng.uniform(0.3, 0.7)))
            cv2.line(wall, (0, int(yline[0] - bb / 2)), (W - 1, int(yline[-1] - bb / 2)), bbc, bb)
        else:
            wall = None
        base = floor_img
        if wall is not None:
            base[~floor_mask] = wall[~floor_mask]

        # ---- image-space floor distractors
        if "cable" in chosen:
            for _ in range(int(rng.integers(1, 3))):
                dis.draw_cable(rng, base, floor_mask)

        # ---- lighting
        gain = {"fluorescent": rng.uniform(0.85, 1.1), "daylight": rng.uniform(0.9, 1.25), "dim": rng.uniform(0.3, 0.55),
                "night_ir": rng.uniform(0.6, 1.0), "flicker": rng.uniform(0.75, 1.05)}[lighting]
        tint = {"fluorescent": [1.0, 1.0, 0.96], "daylight": [1.05, 1.0, 0.95] if rng.random() < 0.5 else [0.9, 0.98, 1.08],
                "dim": [0.8, 0.95, 1.1], "night_ir": [1, 1, 1], "flicker": [1.02, 1.0, 0.95]}[lighting]
        tint = np.array(tint, np.float32) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
        ga = rng.uniform(0, 2 * np.pi)
        grad_s = rng.uniform(0.25, 0.55) if lighting == "daylight" else rng.uniform(0.0, 0.2)
        # illumination is smooth: compute it on a coarse grid and upsample
        gh, gw = max(4, H // 8), max(4, W // 8)
        gy_, gx_ = np.mgrid[0:gh, 0:gw].astype(np.float32)
        u_, v_ = (gx_ + 0.5) / gw - 0.5, (gy_ + 0.5) / gh - 0.5
        G = 1 + grad_s * ((u_ * np.cos(ga) + v_ * np.sin(ga)) * 2)
        vig = rng.uniform(0.5, 0.9) if lighting == "night_ir" else rng.uniform(0.0, 0.3)
        G = G * (1 - vig * (u_ * u_ + v_ * v_) * 2) * (1 + 0.06 * noise.smooth(rng, gh, gw, 3))
        G = cv2.resize(np.clip(G, 0.05, 2.0) * gain, (W, H), interpolation=cv2.INTER_LINEAR)
        light = tint3(rep3(G), tint)
        lit = base * light

        # ---- reflections: the room mirrored in the floor, and the light glints
        if view == "oblique":
            src_y = 2 * yline[None, :] - yy
            env = cv2.remap(wall * light, xx, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # fresnel is smooth: on a coarse grid
            fgy = np.linspace(0, H - 1, gh, dtype=np.float32)[:, None]
            fyl = cv2.resize(yline[None, :], (gw, 1), interpolation=cv2.INTER_AREA)
            depth = np.clip((fgy - fyl) / np.maximum(H - fyl, 1), 0, 1)
            fresnel = cv2.resize((0.2 + 0.8 * (1 - depth) ** 2).astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        else:
            ceil = np.full((H, W, 3), rng.uniform(0.25, 0.55), np.float32)
            for _ in range(int(rng.integers(2, 6))):
                px, py = rng.uniform(0, W), rng.uniform(0, H)
                L, w = W * rng.uniform(0.1, 0.35), W * rng.uniform(0.015, 0.05)
                a = roll + (np.pi / 2 if rng.random() < 0.5 else 0)
                box = cv2.boxPoints(((px, py), (L, w), np.degrees(a)))
                cv2.fillPoly(ceil, [box.astype(np.int32)], (1.0, 1.0, 1.0))
            env = ceil * light
            fresnel = (0.25 + 0.2 * (1 - yy / H)).astype(np.float32)
        env_sharp = cv2.GaussianBlur(env, (0, 0), 0.7 * scale)
        spec = np.zeros((H, W), np.float32)
        n_lights = int(rng.integers(1, 4)) if lighting != "dim" else int(rng.integers(0, 2))
        light_pts: list[tuple[float, float]] = []
        for _ in range(n_lights):
            light_pts.append((rng.uniform(0.05, 0.95) * W, rng.uniform(0.2, 0.95) * H))
        sigma_dry = (0.4 + 3.0 * (1 - fl.gloss)) * 4 * scale
        refl_dry = fl.gloss * 0.45 * fresnel
        room = lit + (noise.blur(env, sigma_dry) - lit) * rep3(refl_dry)
        glare = np.zeros((H, W), np.float32)
        if "glare" in chosen:  # strong soft reflection of a window / lamp on the dry floor
            for _ in range(int(rng.integers(1, 3))):
                gx, gy = rng.uniform(0.1, 0.9) * W, rng.uniform(0.35, 0.95) * H
                ax = (W * rng.uniform(0.03, 0.12), H * rng.uniform(0.08, 0.3))
                cv2.ellipse(glare, (int(gx), int(gy)), (int(ax[0]), int(ax[1])), float(np.degrees(roll) + rng.uniform(-20, 20)),
                            0, 360, float(rng.uniform(0.2, 0.55)), -1)
            glare = noise.blur(glare, W * rng.uniform(0.02, 0.06))
        if "window" in chosen:
            glare = glare + window_reflections(rng, W, H, fl.gloss)
        base_img = room + rep3(glare * floor_mask) * light

        scene = cls(W=W, H=H, seed=seed, view=view, floor=fl, lighting=lighting,
                    camera=_camera(rng, lighting, scale, clip_mode), horizon=horizon, floor_mask=floor_mask,
                    light=light.astype(np.float32), lit_floor=lit.astype(np.float32), base=base_img.astype(np.float32),
                    env_sharp=env_sharp.astype(np.float32), fresnel=fresnel, spec=spec,
                    shadow=np.zeros((H, W), np.float32), occ=np.zeros((H, W), np.float32),
                    occ_col=np.zeros((H, W, 3), np.float32), shadow_dir=(float(np.cos(ga)), float(abs(np.sin(ga)) * 0.5 + 0.2)))
        scene.distractors = sorted(set(chosen))

        # ---- the liquid (field in the floor plane, warped with the same homography)
        Hinv = np.linalg.inv(Hm)
        liquid_centre_img = None
        if spill:
            liq, params = pick_liquid(rng, liquid)
            # porous floors (carpet, bare concrete, wood) soak liquid up: darker, far less mirror-like
            params["darken"] *= 1 - 0.3 * fl.porous
            params["reflect"] *= 1 - 0.7 * fl.porous
            shp = shape or SHAPES[int(rng.choice(len(SHAPES), p=SHAPE_WEIGHTS))]
            if clip_mode:
                x, y = W * rng.uniform(0.3, 0.7), scene_floor_y(floor_mask, rng, 0.45, 0.8)
                r_img = W * rng.uniform(0.14, 0.2)
            else:
                x, y = scene.random_floor_point(rng, 0.12, 0.92)
                r_img = W * float(np.exp(rng.uniform(np.log(0.05), np.log(0.3))))
            if liquid_at is not None:
                x, y = liquid_at[0] * W, liquid_at[1] * H
            if liquid_radius is not None:
                r_img = liquid_radius * W
            p = Hinv @ np.array([x, y, 1.0])
            fx, fy = p[0] / p[2], p[1] / p[2]
            q = Hm @ np.array([[fx, fx + 1, fx], [fy, fy, fy + 1], [1, 1, 1]])
            q = q[:2] / q[2]
            e1, e2 = q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]
            local = float(np.sqrt(abs(e1[0] * e2[1] - e1[1] * e2[0])))
            R = r_img / max(local, 1e-3)
            fx, fy = float(np.clip(fx, 0.05 * T, 0.95 * T)), float(np.clip(fy, 0.05 * T, 0.95 * T))
            R = float(np.clip(R, 3, 0.6 * T))
            fld = shape_field(rng, T, (fx, fy), R, shp)
            wf = cv2.warpPerspective(fld, Hm, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-10.0)
            wf[~floor_mask] = -10.0
            scene.liquid, scene.liquid_params, scene.liquid_field, scene.shape = liq, params, wf, shp
            rr, cc = np.nonzero(wf > -5)
            if len(rr):
                scene.liquid_box = (max(int(rr.min()) - 2, 0), min(int(rr.max()) + 3, H), max(int(cc.min()) - 2, 0), min(int(cc.max()) + 3, W))
            liquid_centre_img = (x, y)
            if rng.random() < (0.6 if liq.name == "water" else 0.35):
                light_pts.append((x + rng.normal(0, r_img * 0.4), y + rng.normal(0, r_img * 0.3)))

        # ---- light glints (sharp on liquids; the dry floor got the blurred version above)
        for (gx, gy) in light_pts:
            axes = (max(1, int(W * rng.uniform(0.01, 0.04))), max(1, int(H * rng.uniform(0.02, 0.08))))
            cv2.ellipse(spec, (int(gx), int(gy)), axes, float(np.degrees(roll)), 0, 360, float(rng.uniform(0.5, 1.0)), -1)
        scene.spec = cv2.GaussianBlur(spec, (0, 0), 0.8 * scale) * (0.5 + 0.5 * fl.gloss)
        scene.base = scene.base + rep3(noise.blur(spec, sigma_dry) * fl.gloss * 0.35 * floor_mask) * light

        # ---- stains: dry, matte, dark — drawn into the floor albedo, i.e. under any liquid
        if "stain" in chosen:
            stain_alb = np.ones((H, W, 3), np.float32)
            for _ in range(int(rng.integers(1, 3))):
                a = np.ones((T, T, 3), np.float32)
                x, y = scene.random_floor_point(rng, 0.15, 0.95)
                p = Hinv @ np.array([x, y, 1.0])
                dis.draw_stain(rng, a, (p[0] / p[2], p[1] / p[2]), T * rng.uniform(0.03, 0.12))
                stain_alb *= cv2.warpPerspective(a, Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=(1, 1, 1))
            stain_alb[~floor_mask] = 1
            scene.lit_floor = scene.lit_floor * stain_alb
            scene.base = scene.base * stain_alb

        # ---- static shadows, signs, standing people
        if "shadow" in chosen:
            for _ in range(int(rng.integers(1, 3))):
                dis.draw_shadow_blob(rng, scene.shadow, floor_mask, float(rng.uniform(0.25, 0.6)))
        if "sign" in chosen:
            x, y = scene.random_floor_point(rng, 0.3, 0.98)
            if liquid_centre_img is not None and rng.random() < 0.5:
                x = liquid_centre_img[0] + rng.choice([-1, 1]) * W * rng.uniform(0.15, 0.3)
            dis.draw_sign(rng, x, y, scene.person_height(x, y, 0.8) * 0.35, scene.occ, scene.occ_col)
        # extra variety drawn from a second stream (so clips and older choices keep their first stream)
        rng2 = np.random.default_rng([seed, 0x0B1E])
        if not clip_mode:
            if rng2.random() < 0.35:  # on a desk these read as cups, laptops, boxes
                scene.distractors = sorted(set(scene.distractors) | {"object"})
                for _ in range(int(rng2.integers(1, 4))):
                    x, y = scene.random_floor_point(rng2, 0.1, 1.0)
                    oh = min(scene.person_height(x, y, rng2.uniform(0.15, 0.45)), 0.22 * H)
                    dis.draw_object(rng2, x, y, oh, scene.occ, scene.occ_col, scene.shadow)
            if rng2.random() < 0.7 and not scene.camera.ir:
                sat, gam = float(rng2.uniform(0.55, 1.2)), float(rng2.uniform(0.8, 1.25))
                wb_b, wb_g, wb_r = (float(v) for v in rng2.uniform(0.9, 1.1, 3))
                scene.camera.colour = (sat, gam, wb_b, wb_g, wb_r)
        if "person" in chosen and not clip_mode:
            for _ in range(int(rng.integers(1, 4))):
                x, y = scene.random_floor_point(rng, 0.2, 1.05)
                pr = dis.random_person(rng, x, y, scene.person_height(x, y, rng.uniform(0.5, 1.2)))
                if view == "ceiling" and rng.random() < 0.5:  # seen from straight above
                    pr.top = True
                    pr.height = W * rng.uniform(0.12, 0.3)
                dis.draw_person_shadow(pr, scene.shadow, scene.shadow_dir, 0.4)
                dis.draw_person(pr, scene.occ, scene.occ_col)

        # ---- lens distortion maps
        lens_k = scene.camera.lens_k
        if lens_k > 0:
            nx = (xx - W / 2) / (W / 2)
            ny = (yy - H / 2) / (W / 2)
            r2 = nx * nx + ny * ny
            f = (1 + lens_k * r2) / (1 + lens_k * 0.6)
            scene.lens_maps = ((W / 2 + nx * f * (W / 2)).astype(np.float32), (H / 2 + ny * f * (W / 2)).astype(np.float32))
        return scene


def window_reflections(rng: np.random.Generator, W: int, H: int, gloss: float) -> np.ndarray:
    """Mirror images of windows and lamps on a polished dry floor (the false alarm of glossy rooms):
    bright panes split by mullions, and lamps stretched into vertical streaks towards the camera.
    Sharp on glossy floors, soft on matte ones. Returns an HxW brightness layer (0..~0.8)."""
    layer = np.zeros((H, W), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        if rng.random() < 0.6:  # window: a tall bright quadrilateral with 1-3 mullions
            cx, top = rng.uniform(0.1, 0.9) * W, rng.uniform(0.3, 0.75) * H
            w, h = W * rng.uniform(0.08, 0.3), H * rng.uniform(0.15, 0.5)
            skew = rng.uniform(-0.3, 0.3) * w
            quad = np.array([[cx - w / 2, top], [cx + w / 2, top], [cx + w / 2 + skew + 0.2 * w, top + h], [cx - w / 2 + skew - 0.2 * w, top + h]],
                            np.float32)
            pane = np.zeros((H, W), np.float32)
            cv2.fillPoly(pane, [quad.astype(np.int32)], float(rng.uniform(0.25, 0.8)))
            bars = int(rng.integers(1, 4))
            thick = max(1, int(w * rng.uniform(0.03, 0.08)))
            for k in range(1, bars + 1):
                f = k / (bars + 1)
                p0 = quad[0] + (quad[1] - quad[0]) * f
                p1 = quad[3] + (quad[2] - quad[3]) * f
                cv2.line(pane, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 0.0, thick)
            if rng.random() < 0.5:  # transom
                yb = top + h * rng.uniform(0.3, 0.6)
                cv2.line(pane, (int(cx - w), int(yb)), (int(cx + w + abs(skew)), int(yb)), 0.0, thick)
            # the reflection fades with distance from the mirror line
            fade = np.clip(1.0 - (np.arange(H, dtype=np.float32)[:, None] - top) / max(h * 1.3, 1.0), 0.2, 1.0)
            layer = np.maximum(layer, pane * fade)
        else:  # lamp: a vertical streak
            x, y0 = rng.uniform(0.05, 0.95) * W, rng.uniform(0.3, 0.8) * H
            length, wid = H * rng.uniform(0.1, 0.4), max(1, int(W * rng.uniform(0.01, 0.04)))
            streak = np.zeros((H, W), np.float32)
            cv2.ellipse(streak, (int(x), int(y0 + length / 2)), (wid, max(1, int(length / 2))), float(rng.uniform(-8, 8)), 0, 360,
                        float(rng.uniform(0.3, 0.8)), -1)
            layer = np.maximum(layer, streak)
    sigma = max(0.4, W * (0.002 + 0.02 * (1.0 - gloss)) * rng.uniform(0.6, 1.4))
    return cv2.GaussianBlur(layer, (0, 0), sigma)


def _gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(255 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def scene_floor_y(floor_mask: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> float:
    ys = np.nonzero(floor_mask.any(axis=1))[0]
    top = ys.min() if len(ys) else 0
    H = floor_mask.shape[0]
    return float(top + rng.uniform(lo, hi) * (H - top))


def _camera(rng: np.random.Generator, lighting: str, scale: float, clip_mode: bool) -> Camera:
    dark = lighting in ("dim", "night_ir")
    return Camera(
        lens_k=float(rng.uniform(0.05, 0.35)) if rng.random() < 0.5 else 0.0,
        blur=(float(rng.uniform(0.3, 1.0)) if clip_mode else float(rng.uniform(0.3, 1.2) * scale)) if rng.random() < 0.4 else 0.0,
        motion=int(rng.integers(2, 5) * scale) if (rng.random() < 0.08 and not clip_mode) else 0,
        noise=float(rng.uniform(0.015, 0.05) if dark else rng.uniform(0.003, 0.02)) * (0.5 if clip_mode else 1.0),
        jpeg=int(rng.integers(35, 95)) if (rng.random() < 0.8 and not clip_mode) else 0,
        stamp=[None, "tr", "tl", "bl"][int(rng.choice(4, p=[0.0, 0.6, 0.3, 0.1] if clip_mode else [0.15, 0.55, 0.2, 0.1]))],
        ir=lighting == "night_ir",
        banding=float(rng.uniform(0.03, 0.1)) if (lighting == "flicker" and not clip_mode) else 0.0,
    )
