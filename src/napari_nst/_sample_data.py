"""Sample content and style: scikit-image's bundled astronaut photograph and a generated
brush-stroke painting (no downloads, no files from outside the installed packages)."""

from __future__ import annotations

import numpy as np


def generated_painting(size: int = 512, seed: int = 3) -> np.ndarray:
    """A swirling, colourful stroke texture in the spirit of an impressionist painting (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    # a smooth flow field from a few random waves, then strokes as its iso-lines
    angle = np.zeros_like(x)
    for _ in range(6):
        fx, fy, phase = rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)
        angle += np.sin(2 * np.pi * (fx * x + phase)) * np.cos(2 * np.pi * fy * y)
    strokes = np.sin(40 * (x * np.cos(angle) + y * np.sin(angle)) + 6 * angle)
    grain = rng.normal(0.0, 0.15, (size, size))
    palette = np.array([[20, 40, 110], [40, 90, 170], [230, 200, 60], [250, 240, 180], [30, 60, 60]],
                       dtype=np.float32)
    t = np.clip((strokes + grain + 1.2) / 2.4, 0, 0.999) * (len(palette) - 1)
    low = np.floor(t).astype(int)
    frac = (t - low)[..., None]
    image = palette[low] * (1 - frac) + palette[low + 1] * frac
    return np.clip(image, 0, 255).astype(np.uint8)


def make_sample_data():
    """napari sample: content (astronaut) and style (generated painting) as two RGB layers, side
    by side so that both are in view (results are drawn over the content)."""
    from skimage import data

    content = data.astronaut()
    return [
        (content, {"name": "astronaut"}, "image"),
        (generated_painting(), {"name": "painting", "translate": (0, content.shape[1] + 32)}, "image"),
    ]
