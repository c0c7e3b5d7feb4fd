"""Arbitrary-style prediction (Ghiasi et al. 2017): one forward pass, any style image, no training.

The method's entry points: the style image(s) are embedded (``style_embedding``), the embeddings
blended and interpolated with the content's own, and the content is rendered at its working size
with the result (``renderer``). The networks and their weights: ``magenta``, ``magenta_weights``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ....settings import Settings
from ...images import PreparedImage, working_shape
from ...memory import FileArray
from ...output import finish_image, finish_into, output_dtype, output_image
from ...result import StepResult
from .magenta_weights import load_model
from .renderer import render, render_into
from .style_embedding import blend_embeddings, embed

#: Working images of more pixels than this are rendered through files (``predict_streamed``):
#: their float32 result and the renderer's features would otherwise be 4x and 2.7x a uint8 RGB
#: input in memory.
STREAM_PIXELS = 4096 * 4096
#: Side of the blocks in which a streamed result is finished and handed over (a zarr store's
#: chunks where they are small enough, ``_finish_block``).
STREAM_BLOCK = 512
#: Convolution outputs a streamed render keeps between its passes (``render_into``'s
#: ``keep_bytes``): less than in memory, as memory is what streaming is for (the rest is
#: recomputed: the same result).
STREAM_KEEP_BYTES = 64 << 20


def load_networks(settings: Settings, device):
    """(style predictor, transformer) with the weights the settings name, on ``device``."""
    predictor = load_model(
        "predictor", settings.predictor_weights, device, directory=settings.weights_dir
    )
    transformer = load_model(
        "transformer", settings.transformer_weights, device, directory=settings.weights_dir
    )
    return predictor, transformer


def working_content(content: PreparedImage, settings: Settings) -> PreparedImage:
    """The content at its working size, which the transformer sees (``.rgb`` as one float32
    array); the content itself when it has that size already, so that the renderer reads it tile
    by tile (a compact uint8 image is never converted whole)."""
    return content.resized(working_shape(*content.shape[:2], settings.size))


def style_embeddings_of(predictor, styles: Sequence[PreparedImage], settings: Settings) -> list:
    """The style embedding of each style image (computed once, then shared by every content)."""
    return [embed(predictor, s.rgb, settings.style_crops) for s in styles]


def blended_embedding(
    style_embeddings: list, predictor, settings: Settings, content: PreparedImage, blend=None
):
    """The embedding a content is rendered with: the styles' blend (``blend``, default
    ``style_blend``), moved towards the content's own embedding (of ``content``, any size: the
    predictor sees it at 256 px) when ``style_strength`` < 1."""
    own = embed(predictor, content.rgb) if settings.style_strength < 1.0 else None
    return blend_embeddings(
        style_embeddings,
        settings.style_blend if blend is None else blend,
        own,
        settings.style_strength,
    )


def stylize_one(
    content: PreparedImage,
    style_embeddings: list,
    predictor,
    transformer,
    settings: Settings,
    finish: bool = True,
    bottleneck=None,
) -> np.ndarray:
    """One content with style embeddings already computed (a batch or a stack shares them);
    ``finish=False``: the transformer's RGB output as it is, before ``finish_image``;
    ``bottleneck``: see ``renderer.render_into``."""
    working = working_content(content, settings)
    if working.regions is None:
        embedding = blended_embedding(style_embeddings, predictor, settings, working)
        result = render(transformer, working, embedding, settings.tile_size, bottleneck=bottleneck)
    else:
        result = _render_regions(working, style_embeddings, predictor, transformer, settings)
    return finish_image(result, content, settings.keep_colors) if finish else result


def _render_regions(
    working: PreparedImage, style_embeddings: list, predictor, transformer, settings: Settings
) -> np.ndarray:
    """Regions by render and composite: the whole content rendered once per group with the
    group's blend, the renders blended by the groups' soft maps (the kept pixels are the
    content's: ``finish_image`` puts them back, over the same soft edge).

    Chosen over a spatial blend of the instance-norm parameters: every region then looks
    exactly as a plain run with its style (the normalisation statistics are the whole image's
    in both), and the borders are the soft maps' blend of two finished renders, with no
    half-conditioned features between them; it costs one render per group."""
    weights = working.regions.weights()[:-1]
    styled = weights.sum(axis=0)
    result = np.zeros((*working.shape[:2], 3), np.float32)
    for number, group in enumerate(working.regions.groups):
        if weights[number].any():
            embedding = blended_embedding(
                style_embeddings, predictor, settings, working, group.blend
            )
            result += weights[number][..., None] * render(
                transformer, working, embedding, settings.tile_size
            )
    kept = styled < 1e-4  # only kept pixels: the content, which finish_image keeps anyway
    result[~kept] /= styled[~kept][:, None]
    result[kept] = working.rgb[kept]
    return np.clip(result, 0.0, 1.0, out=result)


def streams(height: int, width: int, settings: Settings) -> bool:
    """Whether content of ``height`` x ``width`` is rendered through files at its working size
    (``predict_streamed``)."""
    rows, cols = working_shape(height, width, settings.size)
    return rows * cols > STREAM_PIXELS


def predict_streamed(
    content: PreparedImage,
    style_embeddings: list,
    predictor,
    transformer,
    settings: Settings,
    destination,
    index: tuple = (),
) -> None:
    """``stylize_one`` for a working image too big for memory, with ``output_image`` applied:
    the result goes into ``destination[(*index, rows, cols)]`` (numpy, a ``FileArray`` or zarr,
    of the result's shape and ``output_dtype``), a block at a time.

    The tiled renderer reads ``content`` a tile at a time and keeps its features in files
    (``render_into``'s ``features_on_disk``). Its float32 output goes straight into a float32
    RGB ``destination`` in memory or in a file; any other result (another dtype, alpha,
    grayscale, kept colours, a zarr store) is rendered into a scratch file first and finished
    block by block. In memory: the content (the caller's), the destination when it is in
    memory, a band of a tile's working set and one block; the rest is on disk and in the page
    cache: unnamed temporary files in ``TMPDIR`` (the features, 2.7x a uint8 RGB input's size,
    and the scratch file, 4x), which nothing outlives, not even a killed process.
    """
    height, width = content.shape[:2]
    # the content's own embedding sees 256 px: a 1024 px copy will do, not a float32 one at size
    small = (
        content.resized(working_shape(height, width, min(1024, max(height, width))))
        if settings.style_strength < 1.0
        else content
    )
    # a float32 RGB result in memory or in a file is the renderer's own output: rendered
    # straight into it (not into a zarr store: the renderer's last sweep rewrites every block)
    raw = (
        isinstance(destination, (np.ndarray, FileArray))
        and not index
        and settings.output_range == "unit"
        and not content.grayscale
        and not settings.keep_colors
        and tuple(destination.shape) == (height, width, 3)
        and np.dtype(destination.dtype) == np.float32
    )
    embedding = blended_embedding(style_embeddings, predictor, settings, small)
    if raw:
        render_into(
            transformer,
            content,
            embedding,
            destination,
            settings.tile_size,
            keep_bytes=STREAM_KEEP_BYTES,
            features_on_disk=True,
        )
        return
    scratch = FileArray((height, width, 3))
    try:
        render_into(
            transformer,
            content,
            embedding,
            scratch,
            settings.tile_size,
            keep_bytes=STREAM_KEEP_BYTES,
            features_on_disk=True,
        )
        finish_into(
            scratch,
            content,
            destination,
            settings.keep_colors,
            settings.output_range,
            index,
            _finish_block(destination),
        )
    finally:
        scratch.close()  # its disk space now, not when the garbage collector gets to it


def _finish_block(destination) -> tuple[int, int]:
    """Rows and columns of the blocks a streamed result is finished in: a zarr store's chunks
    (each then written once, whole) up to 2048 px, else ``STREAM_BLOCK``."""
    chunks = getattr(destination, "chunks", None)
    if chunks is None or max(chunks[-3], chunks[-2]) > 4 * STREAM_BLOCK:
        return STREAM_BLOCK, STREAM_BLOCK
    return chunks[-3], chunks[-2]


def _predicted(
    content: PreparedImage, style_embeddings: list, predictor, transformer, settings: Settings
) -> np.ndarray:
    """A content's result as runs hand it out (``output_image``). A working image too big for
    memory is rendered through files, and its result is a ``np.memmap`` of an unnamed
    temporary file: memory only where it is read (a float32 result is 4x a uint8 input)."""
    if not streams(*content.shape[:2], settings):
        return output_image(
            stylize_one(content, style_embeddings, predictor, transformer, settings),
            content,
            settings.output_range,
        )
    working = working_content(content, settings)
    colours = 3 if working.alpha is None else 4
    result = FileArray(
        (*working.shape[:2], colours), output_dtype(working.dtype, settings.output_range)
    )
    with torch.inference_mode():
        predict_streamed(working, style_embeddings, predictor, transformer, settings, result)
    return result.memmap()


def weights_info(predictor, transformer) -> dict:
    """The provenance of a prediction: which weights, in which arithmetic."""
    return {
        "weights": f"{predictor.weights_identity} + {transformer.weights_identity}",
        "weights_sha256": {
            **getattr(predictor, "weights_sha256", {}),
            **getattr(transformer, "weights_sha256", {}),
        },
        "precision": "float32",
    }


def predict_iterates(
    content: PreparedImage, style_embeddings: list, settings: Settings, device: torch.device
) -> Iterator[StepResult]:
    """One ``StepResult`` (step 1 of 1) with the prediction of ``content`` rendered with the
    styles' embeddings (``style_embeddings_of``, computed once for a batch or a stack)."""
    start = time.perf_counter()
    predictor, transformer = load_networks(settings, device)
    image = _predicted(content, style_embeddings, predictor, transformer, settings)
    info = weights_info(predictor, transformer)
    if streams(*content.shape[:2], settings):
        info["tiled"] = "through files"
    yield StepResult(
        step=1,
        total_steps=1,
        image=image,
        losses={},
        elapsed=time.perf_counter() - start,
        scale=tuple(image.shape[:2]),
        info=info,
    )


__all__ = [
    "STREAM_PIXELS",
    "predict_iterates",
    "predict_streamed",
    "streams",
    "weights_info",
    "working_content",
]
