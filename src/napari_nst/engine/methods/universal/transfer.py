"""Universal style transfer of one image: levels coarse to fine, each an encode, the
whitening-colouring transform with the whole image's statistics, and a decode.

An image of up to ``WHOLE_PIXELS`` goes through each level in one piece. A larger one goes in
tiles with a halo of the level's reach (``networks.reach``): a first pass over the tiles sums the
content features' moments, a second encodes each tile again, applies the transform computed from
the whole image's statistics and decodes the tile's inside. Tile offsets are multiples of the
level's pooling grid, so a tile's features are the whole image's: no seams.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...memory import FileArray
from .networks import load_level, reach, scale
from .wct import Moments, StyleStatistics, affine, apply_affine

#: Images of more pixels than this go through each level in tiles.
WHOLE_PIXELS = 1536 * 1536
#: Inside of a tile (its halo comes on top), a multiple of every level's grid.
TILE = 512
#: Images of more pixels than this keep the image between levels in temporary files.
IN_FILE_PIXELS = 4096 * 4096 // 2


def levels_in_order(levels) -> list[int]:
    """The levels a run goes through, coarse (5) to fine (1)."""
    return sorted(set(int(level) for level in levels), reverse=True)


def _padded(image: torch.Tensor, level: int) -> torch.Tensor:
    """``image`` padded at its bottom and right to sides that are multiples of the level's grid
    and at least twice it (the deepest convolution reflects a pixel on each side)."""
    grid = scale(level)
    height, width = image.shape[-2:]
    rows = max(-(-height // grid) * grid, 2 * grid) - height
    cols = max(-(-width // grid) * grid, 2 * grid) - width
    if rows == 0 and cols == 0:
        return image
    mode = "reflect" if rows < height and cols < width else "replicate"
    return F.pad(image, (0, cols, 0, rows), mode=mode)


def style_statistics(style: np.ndarray, levels, directory, device) -> dict[int, StyleStatistics]:
    """{level: the style's statistics} of an (H, W, 3) style image in [0, 1]."""
    tensor = _tensor(style, device)
    stats = {}
    with torch.inference_mode():
        for level in levels_in_order(levels):
            encoder, _, _ = load_level(level, directory, device)
            features = encoder(_padded(tensor, level))
            stats[level] = StyleStatistics.of(features)
    return stats


def _tensor(rgb: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None] \
        .to(device)


def _level_whole(image: torch.Tensor, level: int, styles, weights, strength, directory,
                 device) -> torch.Tensor:
    encoder, decoder, _ = load_level(level, directory, device)
    height, width = image.shape[-2:]
    features = encoder(_padded(image, level))
    grid = scale(level)
    inside = features[..., :-(-height // grid), :-(-width // grid)]
    moments = Moments(features.shape[1]).add(inside[0])
    matrix, bias = affine(moments, [s[level] for s in styles], weights, strength)
    return decoder(apply_affine(features, matrix, bias))[..., :height, :width].clamp_(0.0, 1.0)


def transfer(content, styles: list[dict], weights: list[float], strength: float, levels,
             directory, device, out=None) -> np.ndarray:
    """The content (a ``PreparedImage`` at its working size) through every level; returns the
    (H, W, 3) float32 result in [0, 1] (in ``out`` when given: an array or a ``FileArray``)."""
    height, width = content.shape[:2]
    order = levels_in_order(levels)
    with torch.inference_mode():
        if height * width <= WHOLE_PIXELS:
            image = _tensor(content.rgb, device)
            for level in order:
                image = _level_whole(image, level, styles, weights, strength, directory, device)
            result = image[0].permute(1, 2, 0).float().cpu().numpy()
            if out is None:
                return result
            out[:] = result
            return out
        return _transfer_tiled(content, styles, weights, strength, order, directory, device, out)


def _tiles(length: int, tile: int) -> list[tuple[int, int]]:
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def _transfer_tiled(content, styles, weights, strength, order, directory, device, out):
    height, width = content.shape[:2]
    in_file = height * width > IN_FILE_PIXELS
    make = (lambda: FileArray((height, width, 3))) if in_file else \
        (lambda: np.empty((height, width, 3), np.float32))
    source = content.read  # level 5 reads the content itself, tile by tile
    buffers = []
    try:
        for number, level in enumerate(order):
            last = number == len(order) - 1
            target = out if last and out is not None else make()
            if not last or out is None:
                buffers.append(target)
            _level_tiled(source, (height, width), target, level, styles, weights, strength,
                         directory, device)
            source = _reader(target)
        result = buffers.pop() if out is None else out
        return result.memmap() if isinstance(result, FileArray) else result
    finally:
        for buffer in buffers:
            if isinstance(buffer, FileArray):
                buffer.close()


def _reader(array):
    return lambda rows, cols: np.asarray(array[rows, cols], dtype=np.float32)


def _read_tile(read, shape, level: int, r0: int, r1: int, c0: int, c1: int):
    """Tile [r0:r1, c0:c1] with the level's halo (inside the image), as a tensor, and where its
    inside starts in it."""
    halo = -(-reach(level) // scale(level)) * scale(level)
    top, left = max(r0 - halo, 0), max(c0 - halo, 0)
    bottom, right = min(r1 + halo, shape[0]), min(c1 + halo, shape[1])
    block = read(slice(top, bottom), slice(left, right))
    return block, r0 - top, c0 - left


def _level_tiled(read, shape, target, level, styles, weights, strength, directory, device):
    encoder, decoder, _ = load_level(level, directory, device)
    grid = scale(level)
    tiles = [(r, c) for r in _tiles(shape[0], TILE) for c in _tiles(shape[1], TILE)]
    moments = None
    for (r0, r1), (c0, c1) in tiles:  # pass 1: the whole image's moments
        block, top, left = _read_tile(read, shape, level, r0, r1, c0, c1)
        features = encoder(_padded(_tensor(block, device), level))
        inside = features[..., top // grid:(top + r1 - r0 + grid - 1) // grid,
                          left // grid:(left + c1 - c0 + grid - 1) // grid]
        moments = (moments or Moments(features.shape[1])).add(inside[0])
    matrix, bias = affine(moments, [s[level] for s in styles], weights, strength)
    for (r0, r1), (c0, c1) in tiles:  # pass 2: transform and decode each tile
        block, top, left = _read_tile(read, shape, level, r0, r1, c0, c1)
        features = encoder(_padded(_tensor(block, device), level))
        decoded = decoder(apply_affine(features, matrix, bias))
        inside = decoded[0, :, top:top + r1 - r0, left:left + c1 - c0].clamp_(0.0, 1.0)
        target[r0:r1, c0:c1] = inside.permute(1, 2, 0).float().cpu().numpy()
