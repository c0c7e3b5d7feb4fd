"""Universal: Li et al. 2017's universal style transfer, whitening-colouring transforms of the
features of encoders 5, 4, 3, 2, 1 in turn, each decoded back to an image (``transfer``), on the
Collaborative Distillation 16x networks (``networks``); the transform itself (``wct``).

Any style, no training, no optimisation: one encode and decode per level. The strongest
stylisation of the three methods; ``style_strength`` (the transform's α) and fewer or finer
``levels`` keep more of the content.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ....validation import normalized_blend_weights
from ...images import working_shape
from ...memory import FileArray
from ...motion import Carry, blend_with_previous
from ...output import finish_image, finish_into, luminance, output_dtype, output_image
from ...result import StepResult
from .. import Method


@dataclass
class UniversalTarget:
    """Each style's statistics at every level of the run ({level: ``wct.StyleStatistics``}, on
    the CPU), and the weights files the run uses ({file name: sha256})."""

    styles: list
    files: dict


class Universal(Method):
    name = "universal"
    temporal_weight = 1.0

    def style_size(self, settings) -> int | None:
        return round(settings.size * settings.style_scale)

    def in_file_above(self, settings) -> int | None:
        from .transfer import IN_FILE_PIXELS

        return IN_FILE_PIXELS

    def regions_max_pixels(self, settings) -> int | None:
        from .transfer import WHOLE_PIXELS

        return WHOLE_PIXELS  # the transform per region runs on the whole image's features

    def target(self, styles, settings, device) -> UniversalTarget:
        from .networks import load_level
        from .transfer import style_statistics

        files = {}
        for level in sorted(settings.levels, reverse=True):
            files.update(load_level(level, settings.weights_dir)[2])
        return UniversalTarget(
            [
                style_statistics(s, settings.levels, settings.weights_dir, device, settings.size)
                for s in styles
            ],
            files,
        )

    def _raw(self, content, target, settings, device, out=None):
        """The transfer of ``content`` (already at its working size), (H, W, 3) in [0, 1]."""
        from .transfer import transfer

        weights = normalized_blend_weights(settings.style_blend, len(target.styles))
        return transfer(
            content,
            target.styles,
            weights,
            settings.style_strength,
            settings.levels,
            settings.weights_dir,
            device,
            out=out,
        )

    def _info(self, target, settings) -> dict:
        return {
            "weights": " + ".join(target.files),
            "weights_sha256": dict(target.files),
            "precision": "float32 (transform in float64)",
            "levels": list(sorted(settings.levels, reverse=True)),
        }

    def run(self, content, target, settings, device, *, initial=None):
        from .transfer import IN_FILE_PIXELS

        start = time.perf_counter()
        working = content.resized(working_shape(*content.shape[:2], settings.size))
        height, width = working.shape[:2]
        info = self._info(target, settings)
        if height * width <= IN_FILE_PIXELS:
            raw = self._raw(working, target, settings, device)
            image = output_image(
                finish_image(raw, working, settings.keep_colors), working, settings.output_range
            )
        else:  # rendered and finished through files: a memory map comes back
            scratch = FileArray((height, width, 3))
            colours = 3 if working.alpha is None else 4
            result = FileArray(
                (height, width, colours), output_dtype(working.dtype, settings.output_range)
            )
            try:
                self._raw(working, target, settings, device, out=scratch)
                finish_into(scratch, working, result, settings.keep_colors, settings.output_range)
            finally:
                scratch.close()
            image = result.memmap()
            info["tiled"] = "through files"
        yield StepResult(
            step=1,
            total_steps=1,
            image=image,
            losses={},
            elapsed=time.perf_counter() - start,
            scale=(height, width),
            info=info,
        )

    def plane(self, content, target, settings, device, chain):
        """The plane's raw transfer, pulled towards the previous plane's moved result where a
        temporal weight is set (in closed form on the pixels, as predict's)."""
        working = content.resized(working_shape(*content.shape[:2], settings.size))
        raw = self._raw(working, target, settings, device)
        weight = chain.temporal_weight
        luma = luminance(working.rgb)
        link = chain.link(luma, content.shape[0]) if weight > 0 else None
        if link is not None:
            raw = blend_with_previous(raw, link.image, link.trust, weight)
        return Carry(np.asarray(raw, np.float32), luma), self._info(target, settings)
