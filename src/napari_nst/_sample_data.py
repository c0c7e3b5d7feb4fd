"""Sample content and style: scikit-image's bundled astronaut photograph and Van Gogh's *The
Starry Night* (1889, public domain), downloaded on first use like the weights (315 kB, checked
against its sha256, kept in the cache), downscaled to 512 px.

The painting file is the one of jcjohnson/neural-style's examples (a photograph of the painting
in the public domain; that repository is MIT-licensed), pinned to a commit. Offline, a folder
that holds ``starry_night.jpg`` can be named by ``$NAPARI_NST_SAMPLE_DIR`` (or the file put into
the cache); without either the sample falls back to a generated stroke texture and says why.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .engine.weights import WeightsError, WeightsFile, locate

SAMPLE_DIR_ENV = "NAPARI_NST_SAMPLE_DIR"
#: The sample style: where it comes from, and its status, as the layer's metadata records them.
STARRY_NIGHT = WeightsFile(
    "starry_night.jpg",
    "https://raw.githubusercontent.com/jcjohnson/neural-style/"
    "07c4b8299f8fbdafec0c514fc820ff1d7ff62e46/examples/inputs/starry_night.jpg",
    "0592ab0f7b51b3ce72608a95e53880bd93971e5b48f93a0ce8dfd3cbccf3d098",
    "Vincent van Gogh, The Starry Night (1889), public domain (315 kB)",
)
SAMPLE_SOURCE = {
    "title": "The Starry Night",
    "artist": "Vincent van Gogh",
    "year": 1889,
    "status": "public domain (the artist died in 1890)",
    "url": STARRY_NIGHT.url,
    "sha256": STARRY_NIGHT.sha256,
}
#: The sample style's longer side: as large as the content, no larger (it is a style).
SAMPLE_SIZE = 512
#: Seconds the download may wait for an answer: the sample opens on napari's main thread.
DOWNLOAD_TIMEOUT = 10


def sample_painting() -> np.ndarray:
    """The Starry Night as uint8 RGB, 512 px on its longer side; WeightsError if it can be
    neither found nor downloaded (the message says where to put it)."""
    from PIL import Image

    path = locate(
        STARRY_NIGHT, directory=os.environ.get(SAMPLE_DIR_ENV) or None, timeout=DOWNLOAD_TIMEOUT
    )
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((SAMPLE_SIZE, SAMPLE_SIZE), Image.Resampling.LANCZOS)
        return np.asarray(image)


def generated_painting(size: int = 512, seed: int = 3) -> np.ndarray:
    """A swirling, colourful stroke texture (uint8 RGB): the style when the painting cannot be
    had (offline, nothing in the cache)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    # a smooth flow field from a few random waves, then strokes as its iso-lines
    angle = np.zeros_like(x)
    for _ in range(6):
        fx, fy, phase = rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)
        angle += np.sin(2 * np.pi * (fx * x + phase)) * np.cos(2 * np.pi * fy * y)
    strokes = np.sin(40 * (x * np.cos(angle) + y * np.sin(angle)) + 6 * angle)
    grain = rng.normal(0.0, 0.15, (size, size))
    palette = np.array(
        [[20, 40, 110], [40, 90, 170], [230, 200, 60], [250, 240, 180], [30, 60, 60]],
        dtype=np.float32,
    )
    t = np.clip((strokes + grain + 1.2) / 2.4, 0, 0.999) * (len(palette) - 1)
    low = np.floor(t).astype(int)
    frac = (t - low)[..., None]
    image = palette[low] * (1 - frac) + palette[low + 1] * frac
    return np.clip(image, 0, 255).astype(np.uint8)


def make_sample_data():
    """napari sample: content (astronaut) and style (The Starry Night) as two RGB layers, side
    by side so that both are in view (results are drawn over the content)."""
    from skimage import data

    content = data.astronaut()
    beside = {"translate": (0, content.shape[1] + 32)}
    try:
        style = (
            sample_painting(),
            {"name": "starry_night", **beside, "metadata": {"source": dict(SAMPLE_SOURCE)}},
            "image",
        )
    except WeightsError as exc:
        warnings.warn(
            f"napari-nst sample: The Starry Night could not be had, so the style is a "
            f"generated texture instead. {exc} (or name the folder that holds "
            f"{STARRY_NIGHT.filename} by ${SAMPLE_DIR_ENV})",
            RuntimeWarning,
            stacklevel=2,
        )
        style = (generated_painting(), {"name": "generated painting", **beside}, "image")
    return [(content, {"name": "astronaut"}, "image"), style]
