"""Helpers for tests/test_predict.py and benchmarks: the reference runtime (ai-edge-litert) on the
Magenta TFLite files, and square real images at the sizes those files were exported for."""

from __future__ import annotations

import numpy as np

PREDICTOR_INPUT = "style_image"
TRANSFER_CONTENT = "content_image"
TRANSFER_EMBEDDING = "mobilenet_conv/Conv/BiasAdd"


def litert_interpreter(path, threads: int = 2, keep_intermediates: bool = False):
    """An allocated ai-edge-litert interpreter for ``path`` (ImportError when not installed)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_path=str(path),
        num_threads=threads,
        experimental_preserve_all_tensors=keep_intermediates,
    )
    interpreter.allocate_tensors()
    return interpreter


def _inputs(interpreter) -> dict:
    return {d["name"]: d["index"] for d in interpreter.get_input_details()}


def litert_embedding(interpreter, style256: np.ndarray) -> np.ndarray:
    """The 100-d bottleneck of a (256, 256, 3) float image in [0, 1]."""
    interpreter.set_tensor(_inputs(interpreter)[PREDICTOR_INPUT], style256[None].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1).copy()


def litert_transfer(interpreter, content: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """The stylised (384, 384, 3) image for a (384, 384, 3) content and a 100-d embedding."""
    inputs = _inputs(interpreter)
    interpreter.set_tensor(inputs[TRANSFER_CONTENT], content[None].astype(np.float32))
    interpreter.set_tensor(
        inputs[TRANSFER_EMBEDDING], embedding.reshape(1, 1, 1, -1).astype(np.float32)
    )
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy()


def litert_tensor(interpreter, name: str) -> tuple[np.ndarray, float | None]:
    """A tensor of the last invocation by name, dequantised, as NCHW float32, with its
    quantisation step (None for float tensors). Needs ``keep_intermediates=True``."""
    detail = next(d for d in interpreter.get_tensor_details() if d["name"] == name)
    value = interpreter.get_tensor(detail["index"])
    step = None
    if value.dtype == np.int8:
        step, zero_point = detail["quantization"]
        value = (value.astype(np.float32) - zero_point) * step
    return np.ascontiguousarray(value.transpose(0, 3, 1, 2), dtype=np.float32), step


def square_image(rgb: np.ndarray, size: int) -> np.ndarray:
    """Central square of a uint8 (H, W, 3) image resized to ``size`` (bilinear), float32 in [0, 1]:
    the same input for both runtimes."""
    from PIL import Image

    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = Image.fromarray(rgb[top : top + side, left : left + side])
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0
