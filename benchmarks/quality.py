"""The two quality scores of the benchmarks, judged the same way for every method.

* content preservation: SSIM of the luminance (Rec. 601 luma) of result and content, both
  resized to 128 px on the long side (the content's shape), data range 1;
* style match: cosine similarity of the style embeddings that the project's own Magenta style
  predictor gives for the result and for the style image, each squeezed to 256 x 256 whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
SHARED_IMAGES = SHARED / "images"
SHARED_WEIGHTS = SHARED / "weights"
DISTILLED_FILE = SHARED_WEIGHTS / "cd_vgg19_distilled_16x_conv5_1.pth"
# the benchmarks find every weights file in ../shared/weights unless told otherwise
os.environ.setdefault("NAPARI_NST_WEIGHTS_DIR", str(SHARED_WEIGHTS))
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def load_rgb(name: str) -> np.ndarray:
    """A shared image as uint8 RGB."""
    from PIL import Image

    with Image.open(SHARED_IMAGES / name) as image:
        return np.asarray(image.convert("RGB"))


def resized(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) image in [0, 1] (or uint8) resized with antialiasing to ``shape``, float32."""
    import torch
    import torch.nn.functional as F

    image = np.asarray(rgb, dtype=np.float32)
    if np.asarray(rgb).dtype == np.uint8:
        image = image / 255.0
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=tuple(shape), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


class Judge:
    """Scores results against one content and one style image."""

    def __init__(self, content: np.ndarray, style: np.ndarray):
        import torch

        from napari_nst.engine.methods.predict.magenta_weights import load_model

        self._torch = torch
        self.predictor = load_model("predictor", None, torch.device("cpu"))
        height, width = content.shape[:2]
        scale = 128 / max(height, width)
        self.small = (max(8, round(height * scale)), max(8, round(width * scale)))
        self.content_luma = resized(content, self.small) @ _LUMA
        self.style_embedding = self._embedding(style)

    def _embedding(self, rgb: np.ndarray):
        from napari_nst.engine.methods.predict.style_embedding import embed

        return embed(self.predictor, resized(rgb, (256, 256))).flatten().double()

    def ssim(self, result: np.ndarray) -> float:
        from skimage.metrics import structural_similarity

        luma = resized(result, self.small) @ _LUMA
        return float(structural_similarity(luma, self.content_luma, data_range=1.0))

    def style(self, result: np.ndarray) -> float:
        torch = self._torch
        return float(torch.nn.functional.cosine_similarity(
            self._embedding(result), self.style_embedding, dim=0))

    def scores(self, result: np.ndarray) -> tuple[float, float]:
        return self.ssim(result), self.style(result)


def smoke_arguments(doc: str):
    """The ``--smoke`` / ``--json`` arguments every benchmark script takes, parsed, with torch on
    the two threads the figures are recorded with."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny and short: keeps it working")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    torch.set_num_threads(2)
    return parser.parse_args()
