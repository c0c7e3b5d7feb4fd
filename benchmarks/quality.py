"""The quality scores of the benchmarks, judged the same way for every method.

* content preservation: SSIM of the luminance (Rec. 601 luma) of result and content, both
  resized to 128 px on the long side (the content's shape), data range 1;
* style match, two judges that each favour one method:
  - ``style``: cosine similarity of the style embeddings that the project's own Magenta style
    predictor gives for the result and for the style image, each squeezed to 256 x 256 whole
    (higher = closer). Predict is conditioned on that very predictor's embedding, so this judge
    favours predict.
  - ``gram``: Gram-matrix distance on the distilled VGG-19
    (``cd_vgg19_distilled_16x_conv5_1.pth``): the mean over the five Gatys style layers
    conv1_1 ... conv5_1 of ||G(result) - G(style)||_F / ||G(style)||_F, G the Gram matrix
    averaged over the positions (as ``engine.methods.optimize.losses.gram_matrix``), float32,
    the style resized to the result's own working size (its longer side) as optimize resizes
    it (lower = closer). This is what optimize minimises (on this network), so this judge
    favours optimize.
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
    out = F.interpolate(
        tensor, size=tuple(shape), mode="bilinear", antialias=True, align_corners=False
    )
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


_GRAM_EXTRACTOR: list = []  # the distilled VGG-19 cut after conv5_1, loaded once per process
GRAM_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def _gram_extractor():
    if not _GRAM_EXTRACTOR:
        from napari_nst.engine.vgg import VGGFeatures, load_features

        features, _ = load_features("vgg19-distilled", DISTILLED_FILE)
        _GRAM_EXTRACTOR.append(
            VGGFeatures(
                features, GRAM_LAYERS, pooling="avg", network_name="vgg19-distilled"
            ).float()
        )
    return _GRAM_EXTRACTOR[0]


def _grams(rgb: np.ndarray, shape) -> list:
    """The style layers' Gram matrices (averaged over positions, float32) of ``rgb`` (uint8 or
    float in [0, 1]) resized to ``shape`` as optimize resizes its inputs."""
    import torch

    from napari_nst.engine.methods.optimize.losses import gram_matrix
    from napari_nst.engine.tensors import to_tensor

    image = np.asarray(rgb)[..., :3]
    image = (
        image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    )
    with torch.no_grad():
        features = _gram_extractor()(to_tensor(image, shape, torch.device("cpu")))
        return [gram_matrix(features[name].float())[0] for name in GRAM_LAYERS]


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
        self.style_image = style
        self._style_grams: dict = {}  # {result's working shape of the style: Gram matrices}

    def _embedding(self, rgb: np.ndarray):
        from napari_nst.engine.methods.predict.style_embedding import embed

        return embed(self.predictor, resized(rgb, (256, 256))).flatten().double()

    def ssim(self, result: np.ndarray) -> float:
        from skimage.metrics import structural_similarity

        luma = resized(result, self.small) @ _LUMA
        return float(structural_similarity(luma, self.content_luma, data_range=1.0))

    def style(self, result: np.ndarray) -> float:
        torch = self._torch
        return float(
            torch.nn.functional.cosine_similarity(
                self._embedding(result), self.style_embedding, dim=0
            )
        )

    def gram(self, result: np.ndarray) -> float:
        """Mean relative Frobenius distance of the result's Gram matrices from the style's, the
        style resized to the result's longer side (lower = closer to the style)."""
        from napari_nst.engine.images import working_shape

        height, width = np.asarray(result).shape[:2]
        # a result thinner than the network's deepest layer needs (32 px) is enlarged to it
        shape = working_shape(height, width, max(height, width), _gram_extractor().min_side)
        style_shape = working_shape(*self.style_image.shape[:2], max(shape))
        if style_shape not in self._style_grams:
            self._style_grams[style_shape] = _grams(self.style_image, style_shape)
        targets = self._style_grams[style_shape]
        grams = _grams(result, shape)
        return float(np.mean([float((g - t).norm() / t.norm()) for g, t in zip(grams, targets)]))

    def scores(self, result: np.ndarray) -> tuple[float, float]:
        """(SSIM, Magenta style score)."""
        return self.ssim(result), self.style(result)

    def all_scores(self, result: np.ndarray) -> tuple[float, float, float]:
        """(SSIM, Magenta style score, Gram distance)."""
        return self.ssim(result), self.style(result), self.gram(result)


class LoadLog:
    """The machine's 1-minute load average, sampled when asked (after each timed run): the
    figures are recorded on a shared 2-core machine, and a run's own two threads count up to 2."""

    def __init__(self):
        self.samples: list[float] = []

    def sample(self) -> None:
        self.samples.append(os.getloadavg()[0])

    def line(self) -> str:
        if not self.samples:
            return "1-minute load average: not sampled"
        return (
            f"1-minute load average after the timed runs: {min(self.samples):.1f}-"
            f"{max(self.samples):.1f} (median {float(np.median(self.samples)):.1f}; this "
            "benchmark's own 2 threads count up to 2 of it, more means other jobs)"
        )


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
