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

from ...memory import FileArray, release_freed_memory
from .networks import load_level, reach, scale
from .wct import Moments, StyleStatistics, affine, apply_affine

#: Images of more pixels than this go through each level in tiles.
WHOLE_PIXELS = 1536 * 1536
#: Inside of a tile (its halo comes on top), a multiple of every level's grid, at most: a
#: level's tiles are smaller where its halo and width would make a feature map of the tile
#: hold more than ``TILE_VALUES`` values (``tile_side``).
TILE = 512
#: Values of the widest full-resolution feature map of a tile with its halo (32 MB as float32):
#: the encoder and decoder hold two such maps at a time, which bounds a tile's memory.
TILE_VALUES = 8 << 20
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


def style_statistics(style, levels, directory, device, size: int) -> dict[int, StyleStatistics]:
    """{level: the style's statistics} of a style (a ``PreparedImage``) for a run at ``size``;
    a large style is encoded in tiles, as a large content is, and so is any style of a run
    large enough to be tiled (where memory is what counts: a 1024 px style encoded whole
    takes 3x a 4096² uint8 content)."""
    height, width = style.shape[:2]
    whole = height * width <= WHOLE_PIXELS and size * size <= WHOLE_PIXELS
    tensor = _tensor(style.rgb, device) if whole else None
    stats = {}
    with torch.inference_mode():
        for level in levels_in_order(levels):
            encoder, _, _ = load_level(level, directory, device)
            if whole:
                moments = Moments.of(encoder(_padded(tensor, level))[0])
            else:
                moments = _tiled_moments(style.read, (height, width), encoder, level)
            stats[level] = StyleStatistics.from_moments(moments)
    return stats


def _tensor(rgb: np.ndarray, device) -> torch.Tensor:
    """(H, W, 3) -> (1, 3, H, W) channels-last (the networks' layout: no copy of the pixels)."""
    return (
        torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
        .permute(2, 0, 1)[None]
        .to(device)
        .contiguous(memory_format=torch.channels_last)
    )


def _level_whole(
    image: torch.Tensor, level: int, styles, weights, strength, directory, device, regions=None
) -> torch.Tensor:
    encoder, decoder, _ = load_level(level, directory, device)
    height, width = image.shape[-2:]
    features = encoder(_padded(image, level))
    grid = scale(level)
    inside = features[0, :, : -(-height // grid), : -(-width // grid)]
    level_styles = [s[level] for s in styles]
    if regions is None:
        matrix, bias = affine(Moments.of(inside), level_styles, weights, strength)
        transformed = apply_affine(features, matrix, bias)
    else:
        transformed = _per_region(features, inside, regions, level_styles, strength, grid)
    return decoder(transformed)[..., :height, :width].clamp_(0.0, 1.0)


#: A group with fewer feature pixels than this, or than the level has channels, is whitened
#: with the whole image's statistics (the covariance of fewer pixels than channels is singular:
#: its whitening would blow up every direction its pixels do not span), coloured with its own
#: style.
MIN_REGION_PIXELS = 64


def _per_region(features, inside, regions, level_styles, strength, grid) -> torch.Tensor:
    """Li et al.'s transform per region: each group's content features whitened with the
    group's own statistics and coloured with its blend of styles, the results blended by the
    groups' soft maps averaged over each feature pixel (the kept pixels: the features as they
    are). The statistics are taken over the pixels the group holds (soft map above 1/2)."""
    rows, cols = inside.shape[-2:]
    maps = torch.from_numpy(regions.weights()).to(features.device)[None]
    padded_rows, padded_cols = features.shape[-2] * grid, features.shape[-1] * grid
    maps = F.pad(
        maps, (0, padded_cols - maps.shape[-1], 0, padded_rows - maps.shape[-2]), mode="replicate"
    )
    maps = F.avg_pool2d(maps, grid)[0].to(features.dtype)  # (G + 1, h, w) at the features' grid
    whole = None
    result = features * maps[-1]
    for number, group in enumerate(regions.groups):
        weight = maps[number]
        member = weight[:rows, :cols] > 0.5
        if not bool((weight > 0).any()):
            continue
        if int(member.sum()) >= max(MIN_REGION_PIXELS, inside.shape[0]):
            moments = Moments.of(inside[:, member])
        else:
            whole = Moments.of(inside) if whole is None else whole
            moments = whole
        matrix, bias = affine(moments, level_styles, list(group.blend), strength)
        result = result + weight * apply_affine(features, matrix, bias)
    return result


def transfer(
    content,
    styles: list[dict],
    weights: list[float],
    strength: float,
    levels,
    directory,
    device,
    out=None,
) -> np.ndarray:
    """The content (a ``PreparedImage`` at its working size) through every level; returns the
    (H, W, 3) float32 result in [0, 1] (in ``out`` when given: an array or a ``FileArray``)."""
    height, width = content.shape[:2]
    order = levels_in_order(levels)
    with torch.inference_mode():
        if height * width <= WHOLE_PIXELS:
            image = _tensor(content.rgb, device)
            for level in order:
                image = _level_whole(
                    image, level, styles, weights, strength, directory, device, content.regions
                )
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
    make = (
        (lambda: FileArray((height, width, 3)))
        if in_file
        else (lambda: np.empty((height, width, 3), np.float32))
    )
    source = content.read  # level 5 reads the content itself, tile by tile
    buffers = []
    try:
        for number, level in enumerate(order):
            last = number == len(order) - 1
            target = out if last and out is not None else make()
            if not last or out is None:
                buffers.append(target)
            _level_tiled(
                source, (height, width), target, level, styles, weights, strength, directory, device
            )
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
    context = halo(level)
    top, left = max(r0 - context, 0), max(c0 - context, 0)
    bottom, right = min(r1 + context, shape[0]), min(c1 + context, shape[1])
    block = read(slice(top, bottom), slice(left, right))
    return block, r0 - top, c0 - left


def halo(level: int) -> int:
    """Context around a tile: the level's reach, rounded up to its grid."""
    return -(-reach(level) // scale(level)) * scale(level)


def tile_side(level: int, channels: int) -> int:
    """The inside of a level's tiles: ``TILE``, or less where a feature map of ``channels`` at
    full resolution over the tile and its halo would pass ``TILE_VALUES``."""
    side = int((TILE_VALUES / channels) ** 0.5) - 2 * halo(level)
    grid = 16  # every level's grid divides it
    return max(grid, min(TILE, side // grid * grid))


def _tile_grid(shape, level: int, channels: int) -> list:
    side = tile_side(level, channels)
    return [(r, c) for r in _tiles(shape[0], side) for c in _tiles(shape[1], side)]


def _tiled_moments(read, shape, encoder, level: int) -> Moments:
    """The moments of the whole image's features at ``level``, encoded a tile at a time (each
    tile's inside only: halos are counted once, by the tile they belong to)."""
    grid, moments = scale(level), None
    for (r0, r1), (c0, c1) in _tile_grid(shape, level, _widest(encoder)):
        block, top, left = _read_tile(read, shape, level, r0, r1, c0, c1)
        features = encoder(_padded(_tensor(block, device=_device_of(encoder)), level))
        inside = features[
            ...,
            top // grid : (top + r1 - r0 + grid - 1) // grid,
            left // grid : (left + c1 - c0 + grid - 1) // grid,
        ]
        moments = Moments.of(inside[0]) if moments is None else moments.add(inside[0])
        del features, inside
        release_freed_memory()  # freed tile buffers back to the system: they fragment otherwise
    return moments


def _widest(encoder) -> int:
    """Channels of the encoder's first convolution: its widest map at full resolution."""
    return encoder.convs["conv11"].out_channels


def _device_of(module) -> torch.device:
    return next(module.parameters()).device


def _level_tiled(read, shape, target, level, styles, weights, strength, directory, device):
    encoder, decoder, _ = load_level(level, directory, device)
    moments = _tiled_moments(read, shape, encoder, level)  # pass 1: the whole image's moments
    matrix, bias = affine(moments, [s[level] for s in styles], weights, strength)
    for (r0, r1), (c0, c1) in _tile_grid(
        shape, level, _widest(encoder)
    ):  # pass 2: transform and decode each tile
        block, top, left = _read_tile(read, shape, level, r0, r1, c0, c1)
        features = apply_affine(encoder(_padded(_tensor(block, device), level)), matrix, bias)
        decoded = decoder(features)
        inside = decoded[0, :, top : top + r1 - r0, left : left + c1 - c0].clamp_(0.0, 1.0)
        target[r0:r1, c0:c1] = inside.permute(1, 2, 0).float().cpu().numpy()
        del features, decoded, inside
        release_freed_memory()
