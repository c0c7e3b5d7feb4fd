"""The result layers of a run: each emitted iterate becomes an Image layer placed over its
content, with the run's provenance in its metadata; when the run ends its iterates fold into one
layer with a step axis. Also napari's batch of layer-list changes, which Compare uses too.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata

import numpy as np

from ._jobs import Job
from ._naming import run_name, unique_name
from .settings import Settings

_VERSIONED = ("napari-nst", "torch", "torchvision", "napari", "numpy")


@functools.cache
def versions() -> dict:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def placement(scale: tuple, translate: tuple, plane_in: tuple, plane_out: tuple) -> dict:
    """Scale and translate that lay a result plane of ``plane_out`` pixels over its content plane
    of ``plane_in`` pixels (the last two axes; leading axes keep the content's)."""
    factor = (1.0,) * (len(scale) - 2) + tuple(i / o for i, o in zip(plane_in, plane_out))
    # pixel centres: result pixel i covers content pixels [i·f, (i+1)·f) in data units
    return dict(
        scale=tuple(s * f for s, f in zip(scale, factor)),
        translate=tuple(t + s * (f - 1) / 2 for t, s, f in zip(translate, scale, factor)),
    )


def display(data, grayscale: bool, window, settings: Settings) -> dict:
    """Data and display settings of a result layer. With ``output_range="content"`` the result is
    in its content's intensity range, so it gets the content layer's contrast limits and looks
    like it; RGBA results keep their alpha (rgb=True). Explicit limits: napari does not scan
    the data (a stack's result may be a lazy view of a store)."""
    limits = (0.0, 1.0)
    if settings.output_range == "content" and window is not None:
        limits = window
    if grayscale:
        return dict(data=data[..., 0], rgb=False, colormap="gray", contrast_limits=limits)
    return dict(data=data, rgb=True, contrast_limits=limits)


def provenance(job, settings: Settings, **run) -> dict:
    if job.regions is not None:  # which layer styles which label, by name
        run["regions"] = {
            "labels": job.regions.name,
            "styles": job.style.name,
            "per_label": run.get("regions", {}),
        }
    if getattr(job, "name", None):  # a run of slices: which run, for Compare
        run.update(run=job.name, label=job.run_label)
    return {
        "napari_nst": {
            "content": job.content.name + job.content.slice_label,
            "content_layer": job.content.name,
            "style": job.style.name,
            **run,
            "settings": settings.to_metadata(),
            "seed": settings.seed,
            "versions": versions(),
        }
    }


def result_layer_kwargs(job: Job, iterate, settings: Settings) -> dict:
    """Name, placement, display and provenance of the layer for one emitted iterate."""
    content = job.content
    grayscale = content.data.ndim == 2 or (content.data.ndim == 3 and not content.rgb)
    metadata = provenance(
        job,
        settings,
        step=iterate.step,
        total_steps=iterate.total_steps,
        losses=dict(iterate.losses or {}),
        elapsed_s=round(iterate.elapsed, 3),
        **iterate.info,
    )
    name = job.name or job.label
    if iterate.total_steps > 1:  # the step last: "astronaut × starry_night · optimize · step 5"
        name += f" · step {iterate.step}"
    return dict(
        name=name,
        metadata=metadata,
        **placement(
            content.scale, content.translate, content.data.shape[:2], iterate.image.shape[:2]
        ),
        **display(iterate.image, grayscale, content.window, settings),
    )


def add_result_layer(viewer, job: Job, iterate, settings: Settings, baseline=None):
    """Add the iterate's layer on top of the layer list and select it, as napari does with every
    new layer: a result placed lower is hidden by whatever lies above it (a new user then sees
    "done" and an unchanged canvas). The previous iterate is hidden first, so only the newest is
    drawn; older ones stay in the list, one click from view.

    napari's own work per inserted layer (vispy visuals, layer controls, selection) dominates the
    main thread's time during a run; one insert, and no redraw of the layer being hidden, keep it
    to the minimum (measured in benchmarks/bench_worker.py).
    """
    from napari.layers import Image

    if job.name is None:
        job.name = unique_name(viewer, run_name(job, settings, baseline))
    layer = Image(**result_layer_kwargs(job, iterate, settings))
    previous = job.results[-1] if job.results else None
    if previous is not None and previous in viewer.layers:
        previous.visible = False
    viewer.layers.append(layer)
    viewer.layers.selection.active = layer
    job.add_result(layer)
    return layer


STEP_AXIS = "step"


def fold_iterates(viewer, job: Job):
    """Replace a run's iterate layers by ONE layer with a step axis (napari's slider, labelled
    "step", in steps: the runs of a viewer line up by step), shown at the last step, named after
    the run; returns it, or None when there is nothing to fold (a single iterate left is only
    renamed after the run).

    Each iterate keeps its own record in the metadata (``iterates``: step, losses, seconds).
    A coarse scale's smaller iterate is resized to the final size. The fold sits where the run
    started on the other non-spatial axes (a z/t slice's result at its slice).
    """
    layers = [layer for layer in job.results if layer in viewer.layers]
    job.folded = True
    if len(layers) == 1 and job.name:  # one image: named after the run, no step
        layers[0].name = job.name
    if len(layers) < 2:
        return None
    final = layers[-1]
    planes = [_resized(np.asarray(layer.data), final.data.shape) for layer in layers]
    records = [layer.metadata["napari_nst"] for layer in layers]
    steps = [record["step"] for record in records]
    gaps = set(np.diff(steps).tolist())
    step_scale, first = (gaps.pop(), steps[0]) if len(gaps) == 1 else (1, 0)  # else by index
    labels = list(job.content.dims[1])
    point = list(job.content.dims[0])
    if STEP_AXIS in labels:  # the step axis of an earlier fold: line up with it
        where = labels.index(STEP_AXIS)
        del labels[where], point[where]
    others = len(point) - 2  # the viewer's other non-spatial axes: z, t, ...
    data = np.stack(planes).reshape(len(planes), *(1,) * others, *final.data.shape)
    del planes
    scale, translate = tuple(final.scale[-2:]), tuple(final.translate[-2:])
    record = {
        **records[-1],
        "iterates": [
            {"step": r["step"], "losses": r["losses"], "elapsed_s": r["elapsed_s"]} for r in records
        ],
    }
    # the final iterate's layer becomes the fold (half the cost of a new layer: napari's own
    # work per inserted or removed layer is most of it), the others go in one batch
    remove_layers(viewer, layers[:-1])
    final.data = data
    final.scale = (step_scale, *(1.0,) * others, *scale)
    final.translate = (first, *point[:others], *translate)
    final.metadata = {**final.metadata, "napari_nst": record}
    final.name = job.name or final.name
    axes = viewer.dims.axis_labels
    if STEP_AXIS not in axes and viewer.dims.ndim == final.ndim:  # the axis the fold brought
        viewer.dims.axis_labels = (STEP_AXIS, *axes[1:])
    viewer.dims.set_point(
        list(viewer.dims.axis_labels).index(STEP_AXIS), first + step_scale * (len(layers) - 1)
    )  # the last step
    final.visible = True
    viewer.layers.selection.active = final
    job.replace_results(final)
    return final


def layer_batch(viewer):
    """napari's batch of layer-list changes (a context manager): its canvas lays the scene out
    once, at the end, instead of after every change (and runs one garbage collection for the
    layers removed, not one each: 0.17 s a layer here). A no-op where napari has none."""
    batch = getattr(viewer.layers, "batched_update", None)
    return batch() if batch is not None else contextlib.nullcontext()


def remove_layers(viewer, layers) -> None:
    """Remove ``layers`` from the viewer in one batch (2.7 s less for a run of 16 iterates)."""
    with layer_batch(viewer):
        for layer in layers:
            if layer in viewer.layers:
                viewer.layers.remove(layer)


def _resized(image: np.ndarray, shape: tuple) -> np.ndarray:
    """``image`` at ``shape`` (a coarse scale's iterate at the final size), in its dtype."""
    if image.shape == tuple(shape):
        return image
    from skimage.transform import resize

    return resize(image, shape, order=1, preserve_range=True, anti_aliasing=False).astype(
        image.dtype
    )
