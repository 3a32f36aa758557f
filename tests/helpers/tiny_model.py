"""A tiny but real ONNX spill model for tests (no training, no torch), plus matching test images.

It honours the model contract of ``spillwatch.model`` exactly (uint8 ``image`` [N,S,S,3] ->
``spill_prob`` [N], ``spill_map`` [N,G,G]) and is run by onnxruntime like the real one. Its "spill"
is *redness*: per map cell, the mean of ``R - (G + B) / 2`` (0..1) through a sigmoid::

    spill_map  = sigmoid(10 * (mean_cell(R - (G+B)/2) / 255 - 0.3))
    spill_prob = max over cells of spill_map

so a grey/white/dark frame scores ~0.05 and a frame with a saturated red patch covering a cell
scores ~1.0. ``spill_jpeg`` / ``clean_jpeg`` make such frames. Test-only: product code never uses it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spillwatch.model_card import ModelCard, TrainedModel, card_path_for


def build_tiny_model(
    directory: Path,
    *,
    input_size: int = 64,
    map_size: int = 8,
    version: str = "tiny-test-1",
    threshold: float = 0.5,
    map_threshold: float = 0.5,
    name: str = "tiny",
) -> Path:
    """Write ``<name>.onnx`` and ``<name>.card.json`` into ``directory``; returns the model path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if input_size % map_size:
        raise ValueError("input_size must be a multiple of map_size")
    cell = input_size // map_size
    s, g = input_size, map_size
    weights = numpy_helper.from_array(np.array([1.0, -0.5, -0.5], np.float32).reshape(1, 3, 1, 1), "w_red")
    scale = numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "scale")
    offset = numpy_helper.from_array(np.array(0.3, np.float32), "offset")
    gain = numpy_helper.from_array(np.array(10.0, np.float32), "gain")
    axes1 = numpy_helper.from_array(np.array([1], np.int64), "axes1")
    nodes = [
        helper.make_node("Cast", ["image"], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["x_nchw", "scale"], ["x01"]),
        helper.make_node("Conv", ["x01", "w_red"], ["red"], kernel_shape=[1, 1]),
        helper.make_node("AveragePool", ["red"], ["red_cells"], kernel_shape=[cell, cell], strides=[cell, cell]),
        helper.make_node("Sub", ["red_cells", "offset"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["map4"]),
        helper.make_node("Squeeze", ["map4", "axes1"], ["spill_map"]),
        helper.make_node("ReduceMax", ["spill_map"], ["spill_prob"], axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_spill_redness",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", s, s, 3])],
        [
            helper.make_tensor_value_info("spill_prob", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("spill_map", TensorProto.FLOAT, ["N", g, g]),
        ],
        initializer=[weights, scale, offset, gain, axes1],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="spillwatch-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    trained = TrainedModel(input_size=s, map_size=g, threshold=threshold, map_threshold=map_threshold,
                           note="test-only redness graph (tests/helpers/tiny_model.py)")
    ModelCard.for_file(path, trained, version=version, precision="fp32").write(card_path_for(path))
    return path


def frame_image(width: int = 320, height: int = 240, red_box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """A grey, textured BGR frame; ``red_box`` (normalised x0, y0, x1, y1) paints a saturated red patch."""
    rng = np.random.default_rng(width * 7 + height)
    img = np.full((height, width, 3), 120, np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-15, 16, img.shape), 0, 255).astype(np.uint8)
    if red_box is not None:
        x0, y0, x1, y1 = red_box
        img[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] = (0, 0, 230)  # BGR red
    return img


def to_jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def spill_jpeg(width: int = 320, height: int = 240, box: tuple[float, float, float, float] = (0.1, 0.55, 0.45, 0.95)) -> bytes:
    """A frame the tiny model scores as a spill (red patch, bottom-left by default)."""
    return to_jpeg(frame_image(width, height, box))


def clean_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A frame the tiny model scores as clean (~0.05)."""
    return to_jpeg(frame_image(width, height))
