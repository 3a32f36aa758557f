"""Frame sources: video files (optionally looping), RTSP/HTTP streams and USB devices through
OpenCV, and image folders. Each yields decoded BGR frames with a media time.

A source is opened, read until it ends (``EndOfStream``) or fails (``SourceError``: the caller
reconnects with backoff), and closed. ``live`` sources are sampled by wall clock; files and folders
by their media time.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np

from spillwatch.events import FrameLabel
from spillwatch.redact import redact_url

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_STREAM_TIMEOUT_MS = 5000


class SourceError(RuntimeError):
    """The source cannot be opened or read (missing, disconnected, unreadable)."""


class FrameDecodeError(RuntimeError):
    """One frame cannot be decoded (corrupt image): skip it, the source itself is fine."""


class EndOfStream(Exception):
    """A finite source has no more frames."""


@dataclass
class RawFrame:
    image: np.ndarray | None  # None: not decoded (read(decode=False)) or undecodable: use decode_last()
    media_time: float  # seconds from the start of the source (loops continue counting)
    encoded: EncodedFrame | None = None  # already downsized and JPEG-encoded (preloaded clips)
    label: FrameLabel | None = None  # ground truth from a clip's sidecar JSON, if any


@dataclass(frozen=True)
class EncodedFrame:
    media_time: float
    jpeg: bytes
    width: int
    height: int
    label: FrameLabel | None = None


def sidecar_labels(video: Path) -> list[FrameLabel] | None:
    """Per-frame ground truth of a (synthetic/annotated) clip: ``<clip>.json`` with ``labels``."""
    side = video.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        labels = json.loads(side.read_text()).get("labels")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(labels, list) or not all(x in ("spill", "clean") for x in labels):
        return None
    return cast(list[FrameLabel], labels)


class Source(Protocol):
    uri: str
    live: bool

    def open(self) -> None: ...

    def read(self, decode: bool = True) -> RawFrame: ...

    def decode_last(self) -> np.ndarray: ...

    def close(self) -> None: ...


# The URI without credentials (``rtsp://user:pass@host`` -> ``rtsp://***@host``, query tokens too):
# the one redaction of spillwatch/redact.py, under the name this module's users know.
redact = redact_url

# FFmpeg's own log lines go to the process's stderr, out of reach of the log redaction; when a URL
# holds an unencoded "/" or "@" in its password, FFmpeg names a piece of the password as the host
# it cannot resolve. Keep FFmpeg quiet (our SourceError says, redacted, what failed) unless the
# operator asked for its logs (OPENCV_FFMPEG_LOGLEVEL set in the environment).
_FFMPEG_QUIET = ("OPENCV_FFMPEG_LOGLEVEL", "-8")


class VideoFileSource:
    """A video file read at its own frame rate; media time from the frame index."""

    live = False

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self.path = Path(path)
        self.uri = str(path)
        self.loop = loop
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._offset = 0.0
        self._fps = 25.0
        self._labels: list[FrameLabel] | None = None

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"no such video file: {self.path}")
        self._labels = sidecar_labels(self.path)
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video file: {self.path}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps if 0 < fps <= 240 else 25.0
        self._cap = cap
        self._index = 0

    def read(self, decode: bool = True) -> RawFrame:
        if self._cap is None:
            raise SourceError("source not open")
        if not self._cap.grab():
            if not self.path.is_file():
                raise SourceError(f"video file disappeared: {self.path}")
            if not self.loop or self._index == 0:
                raise EndOfStream(self.uri)
            self._offset += self._index / self._fps
            self._cap.release()
            self.open()
            if not self._cap.grab():
                raise SourceError(f"cannot read video file after rewinding: {self.path}")
        t = self._offset + self._index / self._fps
        label = self._labels[self._index] if self._labels and self._index < len(self._labels) else None
        self._index += 1
        return RawFrame(self.decode_last() if decode else None, t, label=label)

    def decode_last(self) -> np.ndarray:
        assert self._cap is not None
        ok, image = self._cap.retrieve()
        if not ok or image is None:
            raise FrameDecodeError(f"cannot decode frame {self._index} of {self.path}")
        return image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class StreamSource:
    """A live source: RTSP/HTTP URL or USB device index. Media time = monotonic time since open."""

    live = True

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._cap: cv2.VideoCapture | None = None
        self._t0 = 0.0

    def _target(self) -> str | int:
        if self.uri.startswith("device:"):
            return int(self.uri.split(":", 1)[1])
        return self.uri

    def open(self) -> None:
        target = self._target()
        if isinstance(target, int):
            cap = cv2.VideoCapture(target)
        else:
            os.environ.setdefault(*_FFMPEG_QUIET)  # read by OpenCV when it first opens FFmpeg
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS]
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open stream {redact(self.uri)}")
        self._cap = cap
        self._t0 = time.monotonic()

    def read(self, decode: bool = True) -> RawFrame:
        if self._cap is None:
            raise SourceError("source not open")
        if not self._cap.grab():
            raise SourceError(f"stream {redact(self.uri)} stopped delivering frames")
        t = time.monotonic() - self._t0
        return RawFrame(self.decode_last() if decode else None, t)

    def decode_last(self) -> np.ndarray:
        assert self._cap is not None
        ok, image = self._cap.retrieve()
        if not ok or image is None:
            raise FrameDecodeError(f"cannot decode a frame of {redact(self.uri)}")
        return image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource:
    """Images in a folder (sorted by name), one per sampling slot: media time = index / fps.

    With ``loop`` the folder is listed again at every pass (new images are picked up). An image
    that cannot be decoded is skipped (``read`` returns ``RawFrame(None, t)`` for it); a folder
    that disappears is a ``SourceError``.
    """

    live = False

    def __init__(self, path: str | Path, fps: float, loop: bool = False) -> None:
        self.path = Path(path)
        self.uri = f"folder:{path}"
        self.fps = fps
        self.loop = loop
        self._files: list[Path] = []
        self._pos = 0
        self._count = 0
        self._last: np.ndarray | None = None
        self._last_name = ""

    def _list(self) -> list[Path]:
        if not self.path.is_dir():
            raise SourceError(f"no such image folder: {self.path}")
        try:
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as exc:
            raise SourceError(f"cannot list {self.path}: {exc}") from exc

    def open(self) -> None:
        self._files = self._list()
        self._pos = 0

    def read(self, decode: bool = True) -> RawFrame:
        if self._pos >= len(self._files):
            if not self.loop:
                raise EndOfStream(self.uri)
            self._files = self._list()
            self._pos = 0
            if not self._files:
                raise SourceError(f"image folder is empty: {self.path}")
        f = self._files[self._pos]
        self._pos += 1
        t = self._count / self.fps
        self._count += 1
        if not f.exists():
            if not self.path.is_dir():
                raise SourceError(f"image folder disappeared: {self.path}")
            self._last, self._last_name = None, f.name
            return RawFrame(None, t)
        self._last, self._last_name = cv2.imread(str(f), cv2.IMREAD_COLOR), f.name
        return RawFrame(self._last, t)

    def decode_last(self) -> np.ndarray:
        if self._last is None:
            raise FrameDecodeError(f"cannot decode image {self._last_name} in {self.path}")
        return self._last

    def close(self) -> None:
        self._files = []


_CLIP_CACHE: dict[tuple[str, float, float, int, int], tuple[list[EncodedFrame], float]] = {}
_CLIP_LOCK = threading.Lock()


def preload_clip(
    path: str | Path, fps: float, max_width: int, jpeg_quality: int, max_frames: int = 5000
) -> tuple[list[EncodedFrame], float]:
    """Decode a video file once: the frames sampled at ``fps``, downsized and JPEG-encoded, plus
    the clip's duration. Cached per (file, mtime, settings), shared by every camera playing it."""
    from producers.imaging import downsize, encode_jpeg
    from producers.sampling import RateSampler

    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as exc:
        raise SourceError(f"no such video file: {p}") from exc
    key = (str(p.resolve()), mtime, fps, max_width, jpeg_quality)
    with _CLIP_LOCK:
        hit = _CLIP_CACHE.get(key)
        if hit is not None:
            return hit
        src = VideoFileSource(p)
        src.open()
        sampler = RateSampler(fps)
        frames: list[EncodedFrame] = []
        n = 0
        try:
            while True:
                try:
                    raw = src.read(decode=False)
                except EndOfStream:
                    break
                n += 1
                if not sampler.offer(raw.media_time):
                    continue
                try:
                    img = downsize(src.decode_last(), max_width)
                except FrameDecodeError:
                    continue
                frames.append(
                    EncodedFrame(raw.media_time, encode_jpeg(img, jpeg_quality), img.shape[1], img.shape[0], raw.label)
                )
                if len(frames) > max_frames:
                    raise SourceError(f"{p}: too long to preload (> {max_frames} sampled frames)")
            duration = n / src._fps
        finally:
            src.close()
        if not frames:
            raise SourceError(f"{p}: no decodable frames")
        _CLIP_CACHE[key] = (frames, duration)
        return frames, duration


class PreloadedClipSource:
    """A video file decoded, sampled and encoded once (``preload_clip``), then played from memory:
    many cameras can replay clips for the cost of reading bytes (benchmarks, demos, replay)."""

    live = False

    def __init__(self, path: str | Path, fps: float, max_width: int, jpeg_quality: int, loop: bool = False) -> None:
        self.path = Path(path)
        self.uri = str(path)
        self.fps, self.max_width, self.jpeg_quality, self.loop = fps, max_width, jpeg_quality, loop
        self._frames: list[EncodedFrame] = []
        self._duration = 0.0
        self._pos = 0
        self._offset = 0.0

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"no such video file: {self.path}")
        self._frames, self._duration = preload_clip(self.path, self.fps, self.max_width, self.jpeg_quality)
        self._pos = 0

    def read(self, decode: bool = True) -> RawFrame:
        if self._pos >= len(self._frames):
            if not self.loop:
                raise EndOfStream(self.uri)
            if not self.path.is_file():
                raise SourceError(f"video file disappeared: {self.path}")
            self._offset += self._duration
            self._pos = 0
        f = self._frames[self._pos]
        self._pos += 1
        return RawFrame(None, self._offset + f.media_time, encoded=f, label=f.label)

    def decode_last(self) -> np.ndarray:
        f = self._frames[self._pos - 1]
        img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise FrameDecodeError("cannot decode a preloaded frame")
        return img

    def close(self) -> None:
        self._frames = []


def open_source(
    uri: str,
    *,
    fps: float,
    loop: bool = False,
    preload: bool = False,
    max_width: int = 480,
    jpeg_quality: int = 85,
) -> Source:
    """The source for a camera's ``source`` setting (``preload``: video files are decoded once)."""
    if uri.startswith("folder:"):
        return FolderSource(uri.split(":", 1)[1], fps=fps, loop=loop)
    if uri.startswith("device:") or re.match(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", uri, re.I):
        return StreamSource(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if preload:
        return PreloadedClipSource(uri, fps=fps, max_width=max_width, jpeg_quality=jpeg_quality, loop=loop)
    return VideoFileSource(uri, loop=loop)
