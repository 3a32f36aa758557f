"""Downsizing and JPEG encoding of captured frames (OpenCV, BGR arrays)."""

from __future__ import annotations

import cv2
import numpy as np

from producers.sampling import scaled_size


def downsize(image: np.ndarray, max_width: int) -> np.ndarray:
    """Shrink to at most ``max_width`` pixels wide (aspect kept, never upscaled; INTER_AREA)."""
    h, w = image.shape[:2]
    nw, nh = scaled_size(w, h, max_width)
    if (nw, nh) == (w, h):
        return image
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
