"""Gatys et al. 2015 as a generator: optimise the pixels, report every step, emit images every N.

The default run starts from predict's result (``init="predict"``, one pass, already near the
goal) and finishes it at full size in 20 L-BFGS steps: on the distilled network it keeps more of
the content than 300 coarse-to-fine steps from the content did, with the same style score, in a
fifth to a quarter of the time (BENCHMARKS.md, "Time to quality by method and start").

Coarse-to-fine (``coarse_to_fine``, for long runs from the content or noise): the optimisation
starts at ``min_size`` and grows by √2 per scale up to the working size, each scale starting
from the previous result upsampled; the step budget is shared between the scales.

The working size is ``size``, or ``min_working_size`` when that is larger (off by default): the
result is then optimised there and resized down. From the content or noise the look changes
below 512 px: conv4_2 sees the image every 8 px, so at 256 px it holds the content on 32
samples across and the style, whose strokes are fixed in pixels too, overruns it (SSIM at
128 px 0.54 at 256 px, 0.64 at 512, on the distilled network). A predict start carries the
content's layout into the optimisation at any size, so the default keeps its look without the
floor (0.63 at 256 px, 0.66 at 512, 0.62 at 1024).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ....settings import Settings
from ...devices import resolve_dtype
from ...images import PreparedImage, working_shape
from ...output import finish_image, output_image
from ...result import StepResult
from ...tensors import to_image, to_tensor
from ...vgg import VGGFeatures, load_features
from .losses import StyleTransferLoss, style_gram_targets

_features_cache: dict = {}
#: L-BFGS curvature pairs kept (torch's default is 100): two image-sized vectors each, the largest
#: single memory item at large sizes.
LBFGS_HISTORY = 50


def scale_sizes(size: int, min_size: int, coarse_to_fine: bool) -> list[int]:
    """Longer-side sizes of the scales, ×√2 apart, ending at ``size``."""
    if not coarse_to_fine or size <= min_size:
        return [size]
    sizes, current = [], float(min_size)
    while round(current) < size:
        sizes.append(round(current))
        current *= math.sqrt(2.0)
    return sizes + [size]


def steps_per_scale(total: int, scales: int) -> list[int]:
    """``total`` steps shared as evenly as possible, any remainder going to the larger scales."""
    scales = min(scales, total)
    base, extra = divmod(total, scales)
    return [base + (1 if i >= scales - extra else 0) for i in range(scales)]


def feature_extractor(settings: Settings, device: torch.device) -> tuple[VGGFeatures, str]:
    """VGG-19 cut after the deepest layer in use, on ``device``; loaded files are cached."""
    source = settings.vgg_weights
    if isinstance(source, torch.nn.Module):
        features, identity = load_features(settings.network, copy.deepcopy(source))
    else:
        key = (settings.network, str(source), str(settings.weights_dir))
        if key not in _features_cache:
            _features_cache.clear()  # keep at most one 548 MB model alive
            _features_cache[key] = load_features(
                settings.network, source, directory=settings.weights_dir
            )
        features, identity = _features_cache[key]
    layers = tuple(settings.content_layers) + tuple(settings.style_layers)
    extractor = VGGFeatures(
        features, layers, pooling=settings.pooling, network_name=settings.network
    )
    extractor.weights_sha256 = dict(getattr(features, "weights_sha256", {}))  # provenance
    return extractor.to(device), identity


def run_scales(settings: Settings) -> list[tuple[int, int]]:
    """(longer-side size, steps) of each scale of a run, smallest first."""
    sizes = scale_sizes(settings.working_size(), settings.min_size, settings.coarse_to_fine)
    budgets = steps_per_scale(settings.steps, len(sizes))
    return list(zip(sizes[len(sizes) - len(budgets) :], budgets))


def _style_tensors(
    styles: list[PreparedImage], settings: Settings, size: int, device: torch.device
) -> list[torch.Tensor]:
    """The style images as the scale of longer side ``size`` compares against them."""
    return [
        to_tensor(
            s.rgb, working_shape(*s.rgb.shape[:2], round(size * settings.style_scale)), device
        )
        for s in styles
    ]


def style_targets(
    styles: list[PreparedImage],
    settings: Settings,
    device: torch.device,
    extractor: VGGFeatures | None = None,
) -> dict[int, list]:
    """The style Gram matrices of every scale a run of these settings may have ({scale size:
    ``style_gram_targets``}): they depend on the styles and the settings only, so a stack
    computes them once and passes them to ``optimize`` for every plane. Every scale of the
    schedule, whatever the step count (a run of fewer steps than scales skips the smallest), so
    that runs differing only in ``steps`` share them (a sweep's cells)."""
    if extractor is None:
        extractor, _ = feature_extractor(settings, device)
    sizes = scale_sizes(settings.working_size(), settings.min_size, settings.coarse_to_fine)
    return {
        size: style_gram_targets(
            extractor, _style_tensors(styles, settings, size, device), settings.style_layers
        )
        for size in sizes
    }


def optimize(
    content: PreparedImage,
    styles: list[PreparedImage],
    settings: Settings,
    device: torch.device,
    initial: np.ndarray | None = None,
    extractor: VGGFeatures | None = None,
    targets: dict[int, list] | None = None,
    temporal: tuple[np.ndarray, np.ndarray] | None = None,
    temporal_weight: float = 0.0,
    warm: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[StepResult]:
    """Yield a ``StepResult`` after every step; ``image`` is set every ``emit_every`` steps and at
    the last step, ``None`` otherwise (so a consumer can stop between any two steps).

    ``initial`` is a start image (H, W, 3) in [0, 1] that is not computed here (``init_image``,
    or the prediction of ``init="predict"``). ``targets``: the styles' Gram matrices from
    ``style_targets`` for these settings, computed once for several contents (then ``styles``
    is not read). ``temporal``: a stack plane's link to the previous plane, (its moved result
    (H, W, 3), trust (H, W)), kept close to with ``temporal_weight`` at every scale. ``warm``:
    the same pair as a start: every scale starts from it where it is trusted (and from the
    previous scale's result elsewhere), so that coarse-to-fine does not blur away the texture
    that the previous plane settled at the working size.
    """
    start = time.perf_counter()
    extractor, compute_dtype, info = _run_setup(settings, device, extractor)
    height, width = content.rgb.shape[:2]
    out_shape = working_shape(height, width, settings.size)
    scales = run_scales(settings)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)

    image, step = None, 0
    costs = [h * w for h, w in (working_shape(height, width, size) for size, _ in scales)]
    total_work = sum(cost * budget for cost, (_, budget) in zip(costs, scales))  # pixels x steps
    work_before = 0  # the work of the scales finished
    for scale_index, (size, budget) in enumerate(scales):
        shape = working_shape(height, width, size)
        content_t = to_tensor(content.rgb, shape, device)
        loss_fn = _scale_loss(
            extractor,
            content,
            content_t,
            styles,
            settings,
            size,
            shape,
            device,
            compute_dtype,
            targets,
            temporal,
            temporal_weight,
        )
        image = _start_image(image, content_t, shape, settings, device, initial, warm, generator)
        image = image.contiguous().requires_grad_(True)
        optimizer = _make_optimizer(settings, image)
        last_scale = scale_index == len(scales) - 1

        for local in range(1, budget + 1):
            _take_step(optimizer, loss_fn, image, clamp=settings.optimizer == "adam")
            step += 1
            progress = (work_before + local * costs[scale_index]) / total_work
            if step % settings.emit_every == 0 or (last_scale and local == budget):
                yield _emitted_iterate(
                    step, settings, image, loss_fn, content, shape, out_shape, start, info, progress
                )
            else:
                yield StepResult(
                    step,
                    settings.steps,
                    None,
                    None,
                    time.perf_counter() - start,
                    shape,
                    info,
                    snapshot=lambda: _result(image, content, settings, out_shape),
                    progress=progress,
                )
        work_before += budget * costs[scale_index]


def _run_setup(
    settings: Settings, device: torch.device, extractor: VGGFeatures | None
) -> tuple[VGGFeatures, torch.dtype, dict]:
    """(the feature extractor, loaded when not given; the compute dtype; the run's provenance:
    the weights and the precision)."""
    identity = "given extractor"
    if extractor is None:
        extractor, identity = feature_extractor(settings, device)
    compute_dtype = resolve_dtype(settings.precision, device)
    info = {
        "weights": identity,
        "weights_sha256": dict(getattr(extractor, "weights_sha256", {})),
        "precision": str(compute_dtype).removeprefix("torch."),
    }
    return extractor, compute_dtype, info


def _scale_loss(
    extractor,
    content: PreparedImage,
    content_t: torch.Tensor,
    styles,
    settings,
    size: int,
    shape,
    device,
    compute_dtype,
    targets,
    temporal,
    temporal_weight: float,
) -> StyleTransferLoss:
    """The loss of one scale (longer side ``size``, ``shape``): against the styles' Gram
    matrices from ``targets`` when given (else the styles at this scale), with the temporal link
    and the regions' guides at this shape."""
    style_ts = None if targets is not None else _style_tensors(styles, settings, size, device)
    link = (
        None
        if temporal is None
        else (
            to_tensor(temporal[0], shape, device),
            to_tensor(temporal[1][..., None], shape, device),
        )
    )
    return StyleTransferLoss(
        extractor,
        content_t,
        style_ts,
        content_layers=settings.content_layers,
        style_layers=settings.style_layers,
        style_layer_weights=settings.style_layer_weights,
        content_weight=settings.content_weight,
        style_weight=settings.style_weight,
        style_strength=settings.style_strength,
        tv_weight=settings.tv_weight,
        style_blend=settings.style_blend,
        compute_dtype=compute_dtype,
        style_grams=None if targets is None else targets[size],
        temporal=link,
        temporal_weight=temporal_weight,
        regions=None if content.regions is None else _guides(content.regions, shape, device),
    )


def _start_image(
    previous, content_t: torch.Tensor, shape, settings, device, initial, warm, generator
) -> torch.Tensor:
    """Where a scale's optimisation starts: the previous scale's result upsampled (with
    ``warm`` where it is trusted), else ``initial``, noise (``init="noise"``) or the content."""
    if previous is not None:
        start_t = F.interpolate(previous.detach(), size=shape, mode="bicubic", align_corners=False)
        if warm is not None:
            trust_t = to_tensor(warm[1][..., None], shape, device)
            start_t = trust_t * to_tensor(warm[0], shape, device) + (1 - trust_t) * start_t
        return start_t
    if initial is not None:
        return to_tensor(initial, shape, device)
    if settings.init == "noise":
        return torch.rand((1, 3, *shape), generator=generator).to(device)
    return content_t.clone()


def _take_step(optimizer: torch.optim.Optimizer, loss_fn, image: torch.Tensor, clamp: bool) -> None:
    """One optimiser step on ``image`` (one loss evaluation and backward pass); ``clamp``: the
    image clamped into [0, 1] after it (Adam's steps)."""

    def closure():
        optimizer.zero_grad(set_to_none=True)
        total, _ = loss_fn(image)
        total.backward()
        return total

    optimizer.step(closure)
    if clamp:
        with torch.no_grad():
            image.clamp_(0.0, 1.0)


def _guides(regions, shape, device) -> list[tuple[torch.Tensor, tuple]]:
    """[(guide (1, 1, h, w), blend)] of each group of labels that occurs, at a scale's shape."""
    maps = regions.weights(shape)
    return [
        (torch.from_numpy(maps[number])[None, None].to(device), group.blend)
        for number, group in enumerate(regions.groups)
        if maps[number].any()
    ]


def _emitted_iterate(
    step, settings, image, loss_fn, content, shape, out_shape, start, info, progress
) -> StepResult:
    """An iterate with the image and the losses *of that image* (one extra forward pass, no
    backward: the optimiser's last evaluation belongs to the image before its step)."""
    with torch.no_grad():
        total, terms = loss_fn(image)
    losses = {name: float(value) for name, value in terms.items()}
    losses["total"] = float(total)
    return StepResult(
        step,
        settings.steps,
        _result(image, content, settings, out_shape),
        losses,
        time.perf_counter() - start,
        shape,
        info,
        progress=progress,
    )


def _result(
    image: torch.Tensor, content: PreparedImage, settings: Settings, out_shape: tuple[int, int]
) -> np.ndarray:
    """The optimised tensor as the run hands out its images: shrunk to the result's shape when
    the working size is larger (a coarse scale's smaller iterate keeps its own shape)."""
    image = image.detach()
    if image.shape[-2] > out_shape[0] or image.shape[-1] > out_shape[1]:
        image = F.interpolate(
            image.clamp(0.0, 1.0),
            size=tuple(out_shape),
            mode="bicubic",
            antialias=True,
            align_corners=False,
        )
    result = finish_image(to_image(image), content, settings.keep_colors)
    return output_image(result, content, settings.output_range)


def _make_optimizer(settings: Settings, image: torch.Tensor) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam([image], lr=settings.learning_rate)
    # One function evaluation per step; the curvature history carries over between steps.
    return torch.optim.LBFGS(
        [image],
        lr=1.0,
        max_iter=1,
        history_size=LBFGS_HISTORY,
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )
