"""The entry points every front end drives: ``run_steps`` (every step), ``iterate`` (emitted
iterates) and ``stylize`` (the final image)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from ..registry import target_key
from ..settings import Settings, make_settings
from ..validation import normalized_blend_weights
from . import methods
from .devices import resolve_device
from .images import prepare_image, working_shape
from .regions import Regions, assign_styles, is_style_mapping
from .result import StepResult


def _as_list(style) -> list:
    if isinstance(style, (list, tuple)):
        if not style:
            raise ValueError("style: no style image given; pass at least one")
        return list(style)
    return [style]


def style_inputs(style, settings: Settings):
    """(the run's style images, their ``regions.StyleAssignment`` or None without regions)."""
    if settings.regions is None:
        if is_style_mapping(style):
            raise ValueError(
                "style: a dict {label: style} says which style goes where, but no "
                "regions were given; pass regions=<label image> too, or a single "
                "style (or a list to blend)"
            )
        return _as_list(style), None
    if not is_style_mapping(style):
        _as_list(style)  # an empty list is an error here too
    return assign_styles(style, settings.style_blend)


def prepare_inputs(content, style, settings: Settings):
    """Validate and map the inputs (ValueError with what to do) before any work starts.

    Returns the prepared content (with its ``regions`` when the settings have some), the
    prepared styles and the initial image (``init_image``, else None). Inputs larger than they
    will be used are resized here, while they are mapped (``prepare_image``'s ``size``), so
    that no float copy at their own size is made: the content and ``init_image`` to the result's
    size (``size``), the styles to the size the method compares them at
    (``Method.style_size``; None: their own size). Working images the method reads tile by tile
    are prepared in temporary files above ``Method.in_file_above`` pixels.
    """
    method = methods.get(settings.method)
    styles, assignment = style_inputs(style, settings)
    prepared_content = _prepare_content(content, settings, "content")
    if assignment is not None:
        prepared_content = with_regions(prepared_content, content, settings, assignment)
    names = ["style"] if len(styles) == 1 else [f"style {i + 1}" for i in range(len(styles))]
    style_size = method.style_size(settings)
    prepared_styles = [
        prepare_image(s, settings.style_window, name=n, size=style_size)
        for s, n in zip(styles, names)
    ]
    if assignment is None:
        normalized_blend_weights(settings.style_blend, len(prepared_styles))  # rejects bad weights
    initial = None
    if settings.init_image is not None:
        shape = working_shape(*prepared_content.shape[:2], settings.size)
        initial = prepare_image(settings.init_image, name="init_image", size=shape).rgb
    return prepared_content, prepared_styles, initial


def _prepare_content(content, settings: Settings, name: str):
    return prepare_image(
        content,
        settings.content_window,
        name=name,
        size=settings.size,
        in_file_above=methods.get(settings.method).in_file_above(settings),
    )


def with_regions(
    prepared,
    content,
    settings: Settings,
    assignment,
    labels=None,
    name: str = "regions",
    warn: bool = True,
):
    """``prepared`` (the content as ``prepare_image`` made it) with its ``Regions``: ``labels``
    (default ``settings.regions``) fitted to the content's spatial shape and resampled to the
    prepared one, the soft edge given in pixels of the result."""
    result_shape = check_regions_size(prepared.shape[:2], settings)
    spatial = tuple(np.shape(content)[:2])
    edge = settings.region_edge * max(prepared.shape[:2]) / max(result_shape)
    regions = Regions.of(
        settings.regions if labels is None else labels,
        spatial,
        prepared.shape[:2],
        assignment,
        edge,
        name,
        warn=warn,
    )
    return dataclasses.replace(prepared, regions=regions)


def check_regions_size(shape, settings: Settings) -> tuple[int, int]:
    """The result's shape for a content of ``shape``, or a ValueError where the method takes no
    regions at that size (``Method.regions_max_pixels``)."""
    result_shape = working_shape(*shape[:2], settings.size)
    limit = methods.get(settings.method).regions_max_pixels(settings)
    if limit is not None and result_shape[0] * result_shape[1] > limit:
        raise ValueError(
            f"regions: {settings.method} takes regions on results of up to "
            f"{limit} pixels (this one: {result_shape[0]}x{result_shape[1]}); "
            "pass a smaller size, or run the regions one at a time"
        )
    return result_shape


def run_steps(
    content, style, settings: Settings | None = None, **overrides
) -> Iterator[StepResult]:
    """Like ``iterate`` but yields after every step (``image`` None between emissions), so that a
    consumer -- napari's worker -- can stop between any two steps. Validates eagerly."""
    settings = make_settings(settings, **overrides)
    prepared_content, prepared_styles, initial = prepare_inputs(content, style, settings)
    device = resolve_device(settings.device)
    return _run([prepared_content], prepared_styles, initial, settings, device)


def _run(contents: list, styles: list, initial, settings: Settings, device) -> Iterator[StepResult]:
    """The method's iterates for each content in turn, against one style target computed
    once, with what every method shares stamped into each iterate's provenance (the method and
    the device); each method adds its own (weights identity, precision)."""

    targets: dict = {}
    for content in contents:
        yield from run_prepared(content, styles, initial, settings, device, targets)


def run_prepared(
    content, styles: list, initial, settings: Settings, device, targets: dict | None = None
) -> Iterator[StepResult]:
    """The method's iterates for one prepared content. ``targets``: style targets already
    computed, by ``settings.target_key`` (a batch or a sweep shares them; filled in here)."""
    from ._triton_guard import guard_triton_import

    guard_triton_import()
    import torch

    method = methods.get(settings.method)
    shared = {"method": settings.method, "device": str(device)}
    if content.regions is not None:
        shared["regions"] = content.regions.describe()
    with torch.inference_mode(False):
        key = target_key(settings)
        if targets is None or key not in targets:
            target = method.target(styles, settings, device)
            if targets is not None:
                targets[key] = target
        else:
            target = targets[key]
        for step in method.run(content, target, settings, device, initial=initial):
            yield dataclasses.replace(step, info={**shared, **step.info})


def iterate(content, style, settings: Settings | None = None, **overrides) -> Iterator[StepResult]:
    """Run style transfer and yield ``StepResult`` objects every ``emit_every`` steps and at the end.

    ``content`` and ``style`` are arrays as napari layers hold them (see ``engine.images``);
    ``style`` may also be a list of arrays (blended). Settings come from ``settings`` and keyword
    overrides, e.g. ``iterate(c, s, steps=100, size=256, device="cpu")``.
    """
    return (it for it in run_steps(content, style, settings, **overrides) if it.emitted)


def stylize(content, style, settings: Settings | None = None, **overrides) -> np.ndarray:
    """Run style transfer to the end and return the final image: float32 (H, W, 3) in [0, 1]
    ((H, W, 4) for RGBA content, its alpha kept; see ``output_range`` for the content's own
    intensity range and dtype).

    The content is read while the run goes on (an integer image is not copied): change it only
    once the run is over. Predict at more than 4096² pixels renders through temporary files
    (``predict.predict_streamed``, in ``TMPDIR``) and returns the result as a ``np.memmap`` of
    an unnamed temporary file: it costs memory where it is read, and the system can page it
    out (a float32 result is 4x a uint8 image; ``output_range="content"`` keeps its size)."""
    final = None
    for final in iterate(content, style, settings, **overrides):
        pass
    return final.image


def predict_batch(
    contents: Sequence, style, settings: Settings | None = None, **overrides
) -> list[np.ndarray]:
    """Stylise several content images with the same style(s): the networks are loaded and the
    style target (predict's embeddings, universal's statistics, optimize's Gram matrices)
    computed once. Any method; the name is predict's, the first to batch. ``contents`` is a list
    of arrays as for ``stylize``; returns one image per content, each at its working size and as
    ``stylize`` returns it."""
    if hasattr(contents, "shape") or hasattr(contents, "__array__"):  # would iterate over rows
        raise ValueError(
            f"predict_batch: contents is one array of shape "
            f"{tuple(getattr(contents, 'shape', ()))}; pass a list of arrays, e.g. "
            "[image] (stylize takes a single image), or list(stack) for a stack"
        )
    settings = make_settings(settings, **overrides)
    contents = list(contents)
    if not contents:
        return []
    _, styles, _ = prepare_inputs(contents[0], style, settings)
    _, assignment = style_inputs(style, settings)
    prepared = []
    for i, content in enumerate(contents):  # the same labels for each content (of its shape)
        one = _prepare_content(content, settings, f"content {i + 1}")
        if assignment is not None:
            one = with_regions(one, content, settings, assignment)
        prepared.append(one)
    device = resolve_device(settings.device)
    return [step.image for step in _run(prepared, styles, None, settings, device) if step.done]


__all__ = ["iterate", "predict_batch", "run_steps", "stylize"]
