"""Optimize: Gatys et al. 2015, the pixels optimised against VGG-19 features (``gatys``: the
loop, coarse to fine; ``losses``: the content, Gram style, total-variation and temporal terms).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ...images import working_shape
from ...motion import Carry, resized
from ...output import luminance
from .. import NAMES, Method, get


@dataclass
class OptimizeTarget:
    """The styles' Gram matrices at every scale of the run ({scale size: per style, per
    layer}) and, for a start image made by another method (``init``), that method's own style
    target: both computed once for every content of a run, on the CPU."""

    styles: list
    grams: dict
    start: object = None


class Optimize(Method):
    name = "optimize"
    iterates = True
    warm_starts = True
    temporal_weight = 1.0

    def style_size(self, settings) -> int | None:
        own = round(settings.working_size() * settings.style_scale)
        if settings.init in NAMES:  # a start image made by another method, from the same styles
            other = get(settings.init).style_size(settings)
            return None if other is None else max(own, other)
        return own

    def target(self, styles, settings, device) -> OptimizeTarget:
        from .gatys import style_targets

        grams = style_targets(styles, settings, device)
        start = None
        if settings.init in NAMES:  # the start method's target, once for every content
            start = get(settings.init).target(styles, start_settings(settings), device)
        return OptimizeTarget(
            styles,
            {
                size: [[g.cpu() for g in layers] for layers in per_style]
                for size, per_style in grams.items()
            },
            start,
        )

    def run(self, content, target, settings, device, *, initial=None):
        from .gatys import optimize

        start = None
        if initial is None and settings.init in NAMES:
            initial, start = start_from(content, target, settings, device)
        steps = optimize(
            content, target.styles, settings, device, initial=initial, targets=target.grams
        )
        return steps if start is None else _with_start(steps, start)

    def plane(self, content, target, settings, device, chain):
        """The plane's raw optimised result at the working size (``Settings.working_size``).

        The optimisation runs on the content as plain RGB, so that its raw result (before
        grayscale, ``keep_colors`` and ``output_range`` are applied, as a single run applies
        them to its final image) can start the next plane. With a previous plane, it starts from
        that plane's moved result (``warm_start``) and keeps close to it where it is trusted (the
        temporal term)."""
        from .gatys import optimize

        # at the working size: the link to the previous plane is made where the optimisation
        # works (a link made at a smaller ``size`` pulls towards an enlarged, blurred result)
        working_size = settings.working_size()
        working = content.resized(working_shape(*content.shape[:2], working_size)).rgb
        luma = luminance(working)
        link = chain.link(luma, content.shape[0])
        initial = start = None
        if settings.init in NAMES:
            initial, start = start_from(content, target, settings, device)
            initial = resized(initial, working.shape[:2])
        if link is not None and chain.warm_start:
            # the moved result where it is trusted; elsewhere (what came into view, what
            # changed) the start a plane on its own would have, not the moved result's edges
            fresh = initial
            if fresh is None:
                fresh = (
                    np.random.default_rng(settings.seed).random(link.image.shape, np.float32)
                    if settings.init == "noise"
                    else working
                )
            initial = link.trust[..., None] * link.image + (1.0 - link.trust[..., None]) * fresh
        pair = (link.image, link.trust) if link is not None else None
        plain = dataclasses.replace(content, values=content.rgb, grayscale=False, alpha=None)
        plain_settings = settings.replace(
            size=working_size, emit_every=settings.steps, keep_colors=False, output_range="unit"
        )
        final = None
        for final in optimize(
            plain,
            target.styles,
            plain_settings,
            device,
            initial=initial,
            targets=target.grams,
            temporal=pair if chain.temporal_weight > 0 else None,
            temporal_weight=chain.temporal_weight,
            warm=pair if chain.warm_start else None,
        ):
            pass
        info = final.info if start is None else {**final.info, "start": start}
        return Carry(final.image, luma), info


def start_settings(settings):
    """The settings of the run that makes the start image of ``init=<a method>``: at full
    strength, as ``start_from`` mixes it with the content by ``style_strength`` (once: the
    other method's own strength knob is not applied on top)."""
    return settings.replace(
        method=settings.init, init="content", output_range="unit", style_strength=1.0
    )


def start_from(content, target: OptimizeTarget, settings, device) -> tuple[np.ndarray, dict]:
    """The start image of ``init=<a method>`` and its provenance: that method's result for the
    content, (H, W, 3) in [0, 1] at ``size`` (finished as its own run finishes it, against its
    style target ``target.start``), mixed with the content by ``style_strength``: strength 0
    starts from the content itself (which is then the optimum, as the style targets are the
    content's own), 1 from the other method's result alone."""
    other = get(settings.init)
    own = start_settings(settings)
    final = None
    for final in other.run(content, target.start, own, device):
        pass
    start = np.asarray(final.image[..., :3], dtype=np.float32)
    info = {"method": settings.init, **final.info}
    strength = float(settings.style_strength)
    if strength >= 1.0:
        return start, info
    plain = resized(np.asarray(content.rgb, dtype=np.float32), start.shape[:2])
    return strength * start + (1.0 - strength) * plain, info


def _with_start(steps, start: dict):
    """The run's steps with the provenance of their start image (``info["start"]``: the
    method and the weights files, with their sha256, that made it)."""
    for step in steps:
        yield dataclasses.replace(step, info={**step.info, "start": start})
