"""Motion between the planes of a stack and the link it gives: each plane follows the previous
plane's result, moved onto it by the motion between the two contents, where that motion can be
trusted (Ruder et al. 2016's short-term consistency). The methods' plane runners read it through
a ``Chain``; ``stack`` builds the chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .images import working_shape

#: How the motion between two planes is undone before a plane starts from its predecessor's
#: result: dense optical flow (TV-L1), one global shift (cross-correlation), or not at all.
MOTIONS = ("flow", "shift", "none")
#: Longer side at which the motion between two planes is estimated (TV-L1 takes about 0.7 s at
#: 256 px and 2.8 s at 512 px on 2 cores; motion between planes is smooth enough to scale up).
FLOW_SIDE = 256
#: Difference of two contents (in the window's units, 0..1) at which a pixel of the previous
#: plane's result is no longer trusted for this one (``follow_motion``).
MISMATCH = 0.1
#: Scale of the Gaussian low-pass applied to both contents before they are compared, in the
#: content's own pixels (a plane enlarged to its working size has its noise enlarged too).
MISMATCH_SIGMA = 2.0


@dataclass(frozen=True)
class Chain:
    """What a stack plane gets from its chain: the previous plane's ``Carry`` (None for the first
    plane, or planes on their own), how the motion is followed, the temporal term's weight and
    whether it starts from the previous result (``warm_start``)."""

    previous: Any = None
    motion: str = "flow"
    temporal_weight: float = 0.0
    warm_start: bool = False

    def link(self, luma: np.ndarray, content_rows: int) -> Link | None:
        """The previous plane's result moved onto this plane (whose content, of
        ``content_rows`` rows, has the luma ``luma`` at the working size), or None."""
        if self.previous is None:
            return None
        return follow_motion(
            self.previous, luma, self.motion, enlargement=luma.shape[0] / content_rows
        )


@dataclass
class Carry:
    """What a plane hands to the next plane of its chain: its raw result (H, W, 3) in [0, 1] at
    the size its method works at, its content's luma at the same size and, for predict, the
    transformer's features after its residual blocks (1, C, h, w; ``renderer.bottleneck_shape``)."""

    image: np.ndarray
    luma: np.ndarray
    features: Any = None


@dataclass
class Link:
    """The previous plane's result moved onto this plane (``image``), how far each pixel of it
    can be trusted (``trust``, (H, W) in [0, 1]), and where each pixel of this plane lies in the
    previous one (``coords``, (2, H, W) rows and columns)."""

    image: np.ndarray
    trust: np.ndarray
    coords: np.ndarray

    def move_features(self, features) -> tuple[Any, np.ndarray]:
        """Features (1, C, h, w) on the transformer's quarter-resolution grid of the previous
        plane (its image padded to multiples of 4) moved the same way, and their trust (h, w).

        The motion and the trust are averaged over each feature's 4 x 4 pixels (the padding
        repeats the image's edge); features are sampled bilinearly, the edge repeated beyond."""
        import torch
        import torch.nn.functional as F

        rows, cols = features.shape[-2:]
        height, width = self.trust.shape
        grid = np.stack(
            np.meshgrid(
                np.arange(height, dtype=np.float32),
                np.arange(width, dtype=np.float32),
                indexing="ij",
            )
        )
        pad = ((0, 0), (0, 4 * rows - height), (0, 4 * cols - width))
        shift = np.pad(self.coords - grid, pad, mode="edge")
        shift = shift.reshape(2, rows, 4, cols, 4).mean(axis=(2, 4)) / 4
        trust = np.pad(self.trust, pad[1:], mode="edge").reshape(rows, 4, cols, 4).mean(axis=(1, 3))
        # where each feature comes from, in grid_sample's [-1, 1] (corners aligned)
        source_rows = (np.arange(rows, dtype=np.float32)[:, None] + shift[0]) / max(rows - 1, 1)
        source_cols = (np.arange(cols, dtype=np.float32)[None, :] + shift[1]) / max(cols - 1, 1)
        sample = torch.from_numpy(
            (np.stack([source_cols, source_rows], axis=-1) * 2 - 1).astype(np.float32)
        )
        moved = F.grid_sample(
            features.float(),
            sample[None].to(features.device),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        return moved, trust.astype(np.float32)


def follow_motion(
    previous: Carry, luma: np.ndarray, motion: str = "flow", enlargement: float = 1.0
) -> Link:
    """The previous plane's result moved onto the content whose luma is ``luma``, and how far
    each pixel of it can be trusted (H, W) in [0, 1] (a ``Link``).

    ``motion``: "flow" follows scikit-image's TV-L1 optical flow between the two contents
    (estimated at ``FLOW_SIDE`` px at most and scaled up), "shift" one global shift
    (cross-correlation, sub-pixel), "none" leaves the result where it was. A pixel is trusted where it
    comes from inside the previous plane and the previous content, moved the same way, matches
    this one (Ruder et al. 2016 drop disoccluded pixels; a photometric check also drops what
    changed in place, such as a nucleus coming into focus in a z-stack): the trust falls from 1
    to 0 as the difference of the two contents, low-passed, grows to ``MISMATCH``.
    ``enlargement``: the working size over the content's own (above 1 where a small plane was
    enlarged); the low-pass spans ``MISMATCH_SIGMA`` of the content's own pixels.
    """
    check_motion(motion)
    from scipy.ndimage import gaussian_filter
    from skimage.transform import warp

    height, width = luma.shape
    rows, cols = np.meshgrid(
        np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij"
    )
    if motion == "flow":
        flow = _flow(luma, previous.luma)  # previous(p + flow(p)) ~ current(p)
        coords = np.stack([rows + flow[0], cols + flow[1]])
    elif motion == "shift":
        from skimage.filters import window
        from skimage.registration import phase_cross_correlation

        # plain cross-correlation of the Hann-windowed contents: whitening (phase correlation)
        # is led by the image borders on small, smooth planes and finds no shift there
        hann = window("hann", luma.shape)
        shift = phase_cross_correlation(
            (luma - luma.mean()) * hann,
            (previous.luma - previous.luma.mean()) * hann,
            upsample_factor=10,
            normalization=None,
        )[0]
        coords = np.stack([rows - shift[0], cols - shift[1]])  # previous(p - shift) ~ current(p)
    else:
        coords = np.stack([rows, cols])

    def moved(channel: np.ndarray) -> np.ndarray:
        return warp(channel, coords, order=1, mode="edge", preserve_range=True).astype(np.float32)

    image = np.stack(
        [moved(previous.image[..., c]) for c in range(previous.image.shape[2])], axis=2
    )
    inside = (
        (coords[0] >= -0.5)
        & (coords[0] <= height - 0.5)
        & (coords[1] >= -0.5)
        & (coords[1] <= width - 0.5)
    )
    # low-passed contents: noise (independent in each plane of a microscope stack) is no change
    sigma = MISMATCH_SIGMA * max(1.0, enlargement)
    mismatch = np.abs(gaussian_filter(moved(previous.luma), sigma) - gaussian_filter(luma, sigma))
    trust = np.clip(1.0 - mismatch / MISMATCH, 0.0, 1.0) * inside
    return Link(image, trust.astype(np.float32), coords)


def check_motion(motion: str) -> None:
    if motion not in MOTIONS:
        raise ValueError(f"motion={motion!r} is not supported; choose one of {', '.join(MOTIONS)}")


def _flow(luma: np.ndarray, previous_luma: np.ndarray) -> np.ndarray:
    """TV-L1 flow (2, H, W) from ``luma`` to ``previous_luma``, estimated on both resized to
    ``FLOW_SIDE`` px at most (its cost grows with the pixels) and scaled back up."""
    from skimage.registration import optical_flow_tvl1
    from skimage.transform import resize

    shape = luma.shape
    small = working_shape(*shape, min(FLOW_SIDE, max(shape)))
    if small == shape:
        return optical_flow_tvl1(luma, previous_luma)
    flow = optical_flow_tvl1(
        resize(luma, small, anti_aliasing=True), resize(previous_luma, small, anti_aliasing=True)
    )
    return np.stack(
        [
            resize(flow[0], shape, order=1) * (shape[0] / small[0]),
            resize(flow[1], shape, order=1) * (shape[1] / small[1]),
        ]
    )


def blend_with_previous(
    result: np.ndarray, moved: np.ndarray, trust: np.ndarray, weight: float
) -> np.ndarray:
    """Predict's temporal term in closed form: per pixel, the image y closest to
    ``|y - result|² + weight·trust·|y - moved|²``, i.e. ``(result + w·t·moved) / (1 + w·t)``:
    the same squared pull towards the previous plane's moved result that optimize adds to its
    loss, against the prediction instead of the content and style terms. Channels last (an
    image, or the transformer's features)."""
    pull = (weight * trust)[..., None]
    return ((result + pull * moved) / (1.0 + pull)).astype(np.float32)


def resized(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) image in [0, 1] at ``shape``, resized as a run resizes its result."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    import torch

    from .tensors import to_image, to_tensor

    return to_image(to_tensor(image, shape, torch.device("cpu")))


__all__ = ["MOTIONS", "Carry", "Chain", "Link", "blend_with_previous", "follow_motion", "resized"]
