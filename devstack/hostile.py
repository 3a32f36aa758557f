"""The hostile corpus: records an attacker, a broken producer or a bad day puts on the topics.

Each builder returns the raw record value (bytes) as it would sit on ``frames`` or
``classifications``; the fault bench (``spillwatch bench faults``) and the hostile tests publish them
and then check that the pipeline dead-letters each one (bounded), keeps going, and still pages a
real spill once. Nothing here decodes an image: the bombs are built from their headers.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spillwatch.events import FrameHeader, encode_frame, utcnow

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
HUGE_SEQ = 10**18


def frame(camera: str, seq: int, image: bytes, *, capture: datetime | None = None, epoch: int | None = None,
          width: int = 320, height: int = 240) -> bytes:
    """A frames record (envelope + image bytes) with the given header fields."""
    head = FrameHeader(camera_id=camera, seq=seq, epoch=epoch, capture_time=capture or utcnow(), width=width, height=height,
                       producer="hostile")
    return encode_frame(head, image)


def oversized_frame(camera: str, nbytes: int) -> bytes:
    """A frame envelope whose image is ``nbytes`` of random bytes (1.7 MB, 20 MB, ...)."""
    return frame(camera, 1, os.urandom(nbytes))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 30000, *, complete: bool = False) -> bytes:
    """A grayscale ``side`` x ``side`` PNG. ``complete``: the whole zero image deflated (30000 px:
    ~0.9 GB of pixels in ~0.9 MB, the issue's bomb; building it takes seconds); otherwise the
    header and the first IDAT chunk only (a decoder still allocates for the full size)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    chunks: list[bytes] = []
    rows = side if complete else min(side, 64)
    block = row * 256
    done = 0
    while done < rows:
        n = min(256, rows - done)
        chunks.append(comp.compress(block if n == 256 else row * n))
        done += n
    chunks.append(comp.flush())
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(chunks)) + _png_chunk(b"IEND", b"")


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF) claiming ``width`` x ``height``: a decompression bomb
    that is as small as the original (a decoder allocates for the claimed size)."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            i += 1
            continue
        marker = jpeg[i + 1]
        seg = (jpeg[i + 2] << 8) | jpeg[i + 3]
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]
        i += 2 + seg
    raise ValueError("no SOF marker in the JPEG")


def many_scans_jpeg(jpeg: bytes, scans: int) -> bytes:
    """``jpeg`` with ``scans`` empty extra scans appended before its end (a scan-count CPU bomb)."""
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    body = jpeg[:-2] if jpeg.endswith(b"\xff\xd9") else jpeg
    return body + sos * scans + b"\xff\xd9"


def corrupt_jpeg(jpeg: bytes) -> bytes:
    """The first 30 bytes of a real JPEG, then zeros."""
    return jpeg[:30] + bytes(len(jpeg) - 30)


def forged_future_frame(camera: str, image: bytes) -> bytes:
    """The issue's forgery: captured in 2100 with a huge sequence number, no epoch."""
    return frame(camera, HUGE_SEQ, image, capture=FAR_FUTURE)


def classification(camera: str, seq: int, prob: float, *, capture: datetime | None = None, epoch: int | None = None,
                   pad: int = 0) -> bytes:
    """A classifications record; ``pad`` adds a spill map of about that many bytes (oversized event)."""
    from spillwatch.events import Classification

    smap = None
    if pad:
        side = max(1, int((pad / 4) ** 0.5))
        smap = [[255] * side for _ in range(side)]
    return Classification(camera_id=camera, seq=seq, epoch=epoch, capture_time=capture or utcnow(), spill_prob=prob,
                          spill_map=smap, model_version="hostile").to_bytes()


@dataclass(frozen=True)
class HostileRecord:
    name: str
    topic: str  # "frames" or "classifications"
    build: Callable[[str, bytes], bytes]  # (camera, a real JPEG) -> record value
    why: str


def corpus(skew_s: float = 600.0, *, full_bombs: bool = False) -> list[HostileRecord]:
    """Every hostile record the bench and the tests publish (camera and a real JPEG supplied).
    ``full_bombs``: the PNG bomb with its whole (0.9 GB) image deflated, as a decoder would see it."""
    png = png_bomb(30000, complete=full_bombs)
    return [
        HostileRecord("oversized frame 1.7 MB", "frames", lambda cam, j: oversized_frame(cam, 1_700_000),
                      "random bytes: not a JPEG; dead letter keeps a prefix"),
        HostileRecord("oversized frame 20 MB", "frames", lambda cam, j: oversized_frame(cam, 20_000_000),
                      "above limits.frame_bytes: refused by its length"),
        HostileRecord("forged future frame", "frames", lambda cam, j: forged_future_frame(cam, j),
                      "capture 2100, seq 1e18: refused by the clock rule"),
        HostileRecord("clock-skewed producer", "frames",
                      lambda cam, j: frame(cam, 5, j, capture=utcnow() + timedelta(seconds=skew_s), epoch=42),
                      f"capture {skew_s:g} s ahead: refused by the clock rule"),
        HostileRecord("PNG bomb 30000x30000", "frames", lambda cam, j: frame(cam, 6, png),
                      "PNG: frames carry JPEG only"),
        HostileRecord("JPEG bomb 30000x30000", "frames", lambda cam, j: frame(cam, 7, jpeg_with_size(j, 30000, 30000)),
                      "refused from its SOF header before decoding"),
        HostileRecord("JPEG with 5000 scans", "frames", lambda cam, j: frame(cam, 8, many_scans_jpeg(j, 5000)),
                      "refused by the scan limit"),
        HostileRecord("corrupt JPEG", "frames", lambda cam, j: frame(cam, 9, corrupt_jpeg(j)), "no frame header"),
        HostileRecord("PNG frame", "frames", lambda cam, j: frame(cam, 10, png_bomb(64, complete=True)), "JPEG only"),
        HostileRecord("malformed envelope", "frames", lambda cam, j: b"this is not an envelope", "bad magic"),
        HostileRecord("malformed JSON", "classifications", lambda cam, j: b"{broken json", "not a Classification"),
        HostileRecord("oversized classification 1.7 MB", "classifications",
                      lambda cam, j: classification(cam, 11, 0.99, pad=1_700_000), "above limits.event_bytes"),
        HostileRecord("forged future classification", "classifications",
                      lambda cam, j: classification(cam, HUGE_SEQ, 0.99, capture=FAR_FUTURE), "clock rule"),
    ]
