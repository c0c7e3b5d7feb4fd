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

from ..settings import Settings
from .images import PreparedImage, finish_image, output_image, working_shape
from .magenta_weights import load_model
from .renderer import render
from .result import StepResult
from .style_embedding import blend_embeddings, embed


def load_networks(settings: Settings, device):
    """(style predictor, transformer) with the weights the settings name, on ``device``."""
    predictor = load_model("predictor", settings.predictor_weights, device,
                           directory=settings.weights_dir)
    transformer = load_model("transformer", settings.transformer_weights, device,
                             directory=settings.weights_dir)
    return predictor, transformer


def working_content(content: PreparedImage, settings: Settings) -> PreparedImage:
    """The content at its working size, which the transformer sees (``.rgb`` as one float32
    array); the content itself when it has that size already, so that the renderer reads it tile
    by tile (a compact uint8 image is never converted whole)."""
    return content.resized(working_shape(*content.shape[:2], settings.size))


def style_embeddings_of(predictor, styles: Sequence[PreparedImage], settings: Settings) -> list:
    """The style embedding of each style image (computed once, then shared by every content)."""
    return [embed(predictor, s.rgb, settings.style_crops) for s in styles]


def blended_embedding(style_embeddings: list, predictor, settings: Settings,
                      content: PreparedImage):
    """The embedding a content is rendered with: the styles' blend, moved towards the content's
    own embedding (of ``content``, any size: the predictor sees it at 256 px) when
    ``style_strength`` < 1."""
    own = embed(predictor, content.rgb) if settings.style_strength < 1.0 else None
    return blend_embeddings(style_embeddings, settings.style_blend, own, settings.style_strength)


def stylize_one(content: PreparedImage, style_embeddings: list, predictor, transformer,
                settings: Settings, finish: bool = True, bottleneck=None) -> np.ndarray:
    """One content with style embeddings already computed (a batch or a stack shares them);
    ``finish=False``: the transformer's RGB output as it is, before ``finish_image``;
    ``bottleneck``: see ``renderer.render_into``."""
    working = working_content(content, settings)
    embedding = blended_embedding(style_embeddings, predictor, settings, working)
    result = render(transformer, working, embedding, settings.tile_size, bottleneck=bottleneck)
    return finish_image(result, content, settings.keep_colors) if finish else result


def predict_image(content: PreparedImage, styles: list[PreparedImage], settings: Settings,
                  device: torch.device) -> np.ndarray:
    """The stylised content (H, W, 3) float32 in [0, 1] at the working size (also the start image
    of ``init="predict"``; ``output_image`` makes it a result)."""
    predictor, transformer = load_networks(settings, device)
    embeddings = style_embeddings_of(predictor, styles, settings)
    return stylize_one(content, embeddings, predictor, transformer, settings)


def predict_iterates(content: PreparedImage, styles: list[PreparedImage], settings: Settings,
                     device: torch.device) -> Iterator[StepResult]:
    """One ``StepResult`` (step 1 of 1) with the prediction; the engine's ``method="predict"``."""
    start = time.perf_counter()
    predictor, transformer = load_networks(settings, device)
    embeddings = style_embeddings_of(predictor, styles, settings)
    image = output_image(stylize_one(content, embeddings, predictor, transformer, settings),
                         content, settings.output_range)
    info = {"weights": f"{predictor.weights_identity} + {transformer.weights_identity}",
            "precision": "float32"}
    yield StepResult(step=1, total_steps=1, image=image, losses={},
                  elapsed=time.perf_counter() - start, scale=tuple(image.shape[:2]), info=info)


def predict_many(contents: Sequence[PreparedImage], styles: list[PreparedImage], settings: Settings,
                 device: torch.device) -> list[np.ndarray]:
    """Results for several contents with the networks loaded and the styles embedded once (the
    engine side of ``run.predict_batch``)."""
    with torch.inference_mode():
        predictor, transformer = load_networks(settings, device)
        embeddings = style_embeddings_of(predictor, styles, settings)
        return [output_image(stylize_one(c, embeddings, predictor, transformer, settings), c,
                             settings.output_range) for c in contents]


__all__ = ["predict_image", "predict_iterates", "predict_many", "working_content"]
