"""The tasks of a stack run (``stack``): the style target, computed once, and one plane's
stylisation, which dask runs in this process or on a cluster's workers (so everything here
pickles by reference, and a task loads the networks through the engine's per-process caches).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..settings import Settings
from . import methods
from .images import PreparedImage, prepare_image, working_shape
from .motion import Carry, Chain, resized
from .output import finish_image, output_image
from .stack_io import PlaneSource, plane_name


@dataclass(frozen=True)
class PlaneJob:
    """What every plane task needs besides its plane: the settings (with the stack's window),
    the stack options, and where results go (None: back to the caller)."""

    settings: Settings
    warm_start: bool
    motion: str
    temporal_weight: float
    writer: Any = None
    #: The styles' ``regions.StyleAssignment`` when the planes have regions (their labels come
    #: with each plane's task).
    assignment: Any = None


@dataclass
class PlaneRecord:
    index: tuple
    seconds: float
    info: dict
    image: np.ndarray | None = None  # None when the task wrote it to the output itself


def style_target(styles: list[PreparedImage], settings: Settings):
    """The method's style target, computed once per run (one task), on the CPU so that it can
    travel between worker processes."""
    import torch

    with torch.inference_mode(False):
        return methods.get(settings.method).target(styles, settings, _device(settings))


def _device(settings: Settings):
    from ._triton_guard import guard_triton_import

    guard_triton_import()
    from .devices import resolve_device

    return resolve_device(settings.device)


def plane_task(plane, index: tuple, target, job: PlaneJob, previous: Carry | None, labels=None):
    """Stylise one plane: (its record, what the next plane of its chain gets: a ``Carry`` or
    None). ``previous``: the ``Carry`` of the plane before it in its chain; ``labels``: the
    plane's regions (with ``job.assignment``).

    Writes the result to ``job.writer`` when there is one (the record then carries no image)."""
    import torch

    start = time.perf_counter()
    settings = job.settings
    method = methods.get(settings.method)
    device = _device(settings)
    shared = {"method": settings.method, "device": str(device)}
    if isinstance(plane, PlaneSource):
        info = method.plane_streamed(plane.plane(), index, target, settings, device, job.writer)
        return PlaneRecord(index, time.perf_counter() - start, {**shared, **info}), None
    content = prepare_image(
        plane, settings.content_window, name=plane_name(index), size=settings.size
    )
    if job.assignment is not None:
        from .run import with_regions

        content = with_regions(
            content,
            plane,
            settings,
            job.assignment,
            np.asarray(labels),
            f"regions of {plane_name(index)}",
            warn=False,
        )
        shared["regions"] = content.regions.describe()
    del plane
    chain = Chain(previous, job.motion, job.temporal_weight, job.warm_start)
    with torch.inference_mode(False):
        raw, info = method.plane(content, target, settings, device, chain)
    info = {**shared, **info}
    # a method may work above ``size`` (optimize's working size); the plane's result is at
    # ``size``, as a single run's; the next plane links to the raw result
    result = resized(raw.image, working_shape(*content.shape[:2], settings.size))
    image = output_image(
        finish_image(result, content, settings.keep_colors), content, settings.output_range
    )
    record = PlaneRecord(index, time.perf_counter() - start, info)
    if job.writer is not None:
        job.writer[index] = image
    else:
        record.image = image
    return record, raw if job.temporal_weight > 0 or job.warm_start else None
