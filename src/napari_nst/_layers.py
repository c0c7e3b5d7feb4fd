"""The layers of a run: copies of the input layers, jobs, and the result layers.

Inputs are snapshotted on the main thread when a run starts (so removing, renaming or editing a
layer mid-run changes nothing); each emitted iterate becomes an Image layer placed over its
content, with the run's provenance in its metadata. Jobs refer to layers weakly, so a deleted
result layer is freed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .settings import Settings

_VERSIONED = ("napari-nst", "torch", "torchvision", "napari", "numpy")


def _weak(layer) -> weakref.ref | None:
    # napari hands plugin widgets proxies of its viewer, and a proxy of a layer lives only as long
    # as the expression that made it: refer to the layer itself
    return None if layer is None else weakref.ref(getattr(layer, "__wrapped__", layer))


@dataclass
class LayerSnapshot:
    """What the engine needs from a layer, copied at the start of a run.

    ``data`` is None once the run has ended: the copy is released (it is the size of the input).
    """

    name: str
    data: Any
    window: tuple | None
    rgb: bool
    scale: tuple
    translate: tuple
    slice_label: str = ""
    layer_ref: weakref.ref | None = field(default=None, repr=False, compare=False)
    #: The viewer's world point and axis labels when the run started (where on the non-spatial
    #: axes its result belongs: ``fold_iterates``).
    dims: tuple = ((), ())

    @property
    def layer(self):
        """The source layer (shown in the comparison grid), or None once it is gone."""
        return self.layer_ref() if self.layer_ref is not None else None


@dataclass
class Job:
    """One content with one style (or, with ``regions``, a style per label: ``style.data`` is
    then the dict {label: style image} and ``style.name`` says which layer goes where)."""

    content: LayerSnapshot
    style: LayerSnapshot
    result_refs: list = field(default_factory=list, repr=False)  # weak, in order of steps
    regions: LayerSnapshot | None = None
    #: The run's name in the layer list, unique there, set with its first result.
    name: str | None = None
    folded: bool = False

    @property
    def results(self) -> list:
        """The result layers in order of steps; a deleted one is left out once it is freed (the
        job does not keep it alive)."""
        return [layer for layer in (ref() for ref in self.result_refs) if layer is not None]

    def add_result(self, layer) -> None:
        self.result_refs.append(_weak(layer))

    def replace_results(self, layer) -> None:
        self.result_refs = [_weak(layer)]

    @property
    def run_label(self) -> str:
        """The name after the pair, "predict · strength 0.3": Compare's label of its cell."""
        return (self.name or "").removeprefix(f"{self.label} · ")

    def release(self) -> None:
        """Drop the input copies, once the run has ended."""
        self.content.data = self.style.data = None
        if self.regions is not None:
            self.regions.data = None

    @property
    def label(self) -> str:
        return f"{self.content.name}{self.content.slice_label} × {self.style.name}"


def _image_layers(viewer, layers) -> list:
    """Image layers from a layer, a name, or a list of either; ValueError naming the problem."""
    from napari.layers import Image

    items = layers if isinstance(layers, (list, tuple)) else [layers]
    if not items:
        raise ValueError("no layer given; choose at least one Image layer")
    found = []
    for item in items:
        item = _named(viewer, item)
        if not isinstance(item, Image):
            raise ValueError(f"layer {getattr(item, 'name', item)!r} is a "
                             f"{type(item).__name__} layer; style transfer needs Image layers")
        found.append(item)
    return found


def _named(viewer, item):
    """The layer ``item`` names (a string), or ``item`` itself."""
    if isinstance(item, str):
        if item not in viewer.layers:
            raise ValueError(f"there is no layer named {item!r} in the viewer")
        return viewer.layers[item]
    return item


def _labels_layer(viewer, layer):
    """A Labels layer from a layer or a name; ValueError naming the problem."""
    from napari.layers import Labels

    layer = _named(viewer, layer)
    if not isinstance(layer, Labels):
        raise ValueError(f"regions: layer {getattr(layer, 'name', layer)!r} is a "
                         f"{type(layer).__name__} layer; regions come from a Labels layer")
    return layer


def snapshot_layer(viewer, layer) -> LayerSnapshot:
    """A copy of the 2-D image on screen: the displayed slice of a z/t stack, with its window
    (a Labels layer: its labels, no window)."""
    spatial_ndim = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    index, label = (), ""
    if spatial_ndim > 2:
        point = layer.world_to_data(viewer.dims.point[-spatial_ndim:])
        leading = [int(np.clip(round(p), 0, n - 1)) for p, n in
                   zip(point[:spatial_ndim - 2], layer.data.shape[:spatial_ndim - 2])]
        index = tuple(leading)
        labels = [str(viewer.dims.axis_labels[-spatial_ndim + i]) for i in range(len(leading))]
        if all(label.lstrip("-").isdigit() for label in labels):  # napari's default labels
            label = f" [slice {', '.join(map(str, leading))}]"
        else:
            label = " [" + ", ".join(f"{name}={v}" for name, v in zip(labels, leading)) + "]"
    data = np.array(layer.data[index] if index else layer.data, copy=True)
    limits = getattr(layer, "contrast_limits", None)
    window = tuple(float(v) for v in limits) if limits else None
    return LayerSnapshot(
        name=layer.name, data=data, window=window, rgb=bool(getattr(layer, "rgb", False)),
        scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
        slice_label=label, layer_ref=_weak(layer),
        dims=(tuple(viewer.dims.point), tuple(map(str, viewer.dims.axis_labels))))


def make_jobs(viewer, content, style, regions=None) -> list[Job]:
    """One job per (content, style) pair, contents outermost; with ``regions`` (a Labels layer)
    one job per content, ``style`` a dict {label: Image layer}. Inputs are snapshotted now."""
    contents = [snapshot_layer(viewer, layer) for layer in _image_layers(viewer, content)]
    if regions is None:
        return [Job(c, s) for c in contents for s in _style_snapshots(viewer, style)]
    labels = snapshot_layer(viewer, _labels_layer(viewer, regions))
    return [Job(c, region_styles(viewer, style), regions=labels) for c in contents]


def _style_snapshots(viewer, style) -> list[LayerSnapshot]:
    if isinstance(style, dict):
        raise ValueError("style: a dict {label: layer} needs regions=<a Labels layer>")
    return [snapshot_layer(viewer, layer) for layer in _image_layers(viewer, style)]


def region_styles(viewer, style) -> LayerSnapshot:
    """The styles of a run with regions as one snapshot: {label: the style layer's slice on
    screen, mapped to 0..1 by its own contrast limits} (each style keeps its own window), named
    "1=starry, 2=scream"."""
    if not isinstance(style, dict):  # one layer (or a list, blended) for every non-zero label
        snapshots = _style_snapshots(viewer, style)
        data = [_windowed(s) for s in snapshots]
        return LayerSnapshot(name=" + ".join(s.name for s in snapshots),
                             data=data if len(data) > 1 else data[0], window=None, rgb=True,
                             scale=(1.0, 1.0), translate=(0.0, 0.0))
    if not style:
        raise ValueError("style: no label has a style; give at least one label a style layer")
    data, names = {}, []
    for label, layer in style.items():
        snapshots = _style_snapshots(viewer, layer)
        images = [_windowed(s) for s in snapshots]
        data[label] = images if len(images) > 1 else images[0]
        names.append(f"{label}={'+'.join(s.name for s in snapshots)}")
    return LayerSnapshot(name=", ".join(names), data=data, window=None, rgb=True,
                         scale=(1.0, 1.0), translate=(0.0, 0.0))


def _windowed(snapshot: LayerSnapshot) -> np.ndarray:
    """A style's pixels mapped by its layer's contrast limits, as the engine maps one style."""
    from .engine.images import prepare_image

    prepared = prepare_image(snapshot.data, snapshot.window, name=f"style {snapshot.name}")
    return prepared.rgb if not prepared.grayscale else prepared.rgb[..., 0]


def job_settings(settings: Settings, job) -> Settings:
    regions = None if job.regions is None else job.regions.data
    return settings.replace(content_window=job.content.window, style_window=job.style.window,
                            regions=regions)


@functools.cache
def _versions() -> dict:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _placement(scale: tuple, translate: tuple, plane_in: tuple, plane_out: tuple) -> dict:
    """Scale and translate that lay a result plane of ``plane_out`` pixels over its content plane
    of ``plane_in`` pixels (the last two axes; leading axes keep the content's)."""
    factor = (1.0,) * (len(scale) - 2) + tuple(i / o for i, o in zip(plane_in, plane_out))
    # pixel centres: result pixel i covers content pixels [i·f, (i+1)·f) in data units
    return dict(scale=tuple(s * f for s, f in zip(scale, factor)),
                translate=tuple(t + s * (f - 1) / 2 for t, s, f in zip(translate, scale, factor)))


def _display(data, grayscale: bool, window, settings: Settings) -> dict:
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


def _provenance(job, settings: Settings, **run) -> dict:
    if job.regions is not None:  # which layer styles which label, by name
        run["regions"] = {"labels": job.regions.name, "styles": job.style.name,
                          "per_label": run.get("regions", {})}
    if getattr(job, "name", None):  # a run of slices: which run, for Compare
        run.update(run=job.name, label=job.run_label)
    return {"napari_nst": {
        "content": job.content.name + job.content.slice_label, "content_layer": job.content.name,
        "style": job.style.name, **run,
        "settings": settings.to_metadata(), "seed": settings.seed, "versions": _versions()}}


#: Settings left out of result names: they do not change what a result looks like (or the
#: name says it already, or they are the inputs' own, set per layer).
_NOT_NAMED = {"method", "device", "emit_every", "weights_dir", "output_range", "content_window",
              "style_window", "regions", "vgg_weights", "predictor_weights",
              "transformer_weights"}
#: Shorter words for some settings in result names; the others by their name.
_NAME_WORDS = {"style_strength": "strength", "init_image": "start image",
               "min_working_size": "working floor", "style_layer_weights": "layer weights"}


#: Settings that matter only with another one: named only then.
_ONLY_WITH = {"min_size": lambda s: s.coarse_to_fine,
              "learning_rate": lambda s: s.optimizer == "adam"}


def differing_settings(settings: Settings, baseline: Settings) -> list[str]:
    """The settings of ``settings`` that a run of its method reads and that differ from
    ``baseline``, as words for a name: "strength 0.3", "steps 50", "keep colors"."""
    from .settings import applies_to

    words = []
    for f in dataclasses.fields(Settings):
        if f.name in _NOT_NAMED or not applies_to(f.name, settings.method) \
                or not _ONLY_WITH.get(f.name, bool)(settings):
            continue
        value, base = getattr(settings, f.name), getattr(baseline, f.name)
        if value is base or (not hasattr(value, "shape") and not hasattr(base, "shape")
                             and value == base):
            continue
        word = _NAME_WORDS.get(f.name, f.name.replace("_", " "))
        if isinstance(value, bool):
            words.append(word if value else f"no {word}")
        elif hasattr(value, "shape") or value is None:
            words.append(word if value is not None else f"no {word}")
        elif isinstance(value, (tuple, list)):
            words.append(f"{word} {','.join(map(str, value)) or 'none'}")
        else:
            words.append(f"{word} {value:g}" if isinstance(value, float) else f"{word} {value}")
    return words


def run_name(job, settings: Settings, baseline: Settings | None = None) -> str:
    """What a result is: "tubingen × starry_night · predict · strength 0.3" (pair, method, what
    differs from ``baseline``, by default the API's defaults)."""
    words = differing_settings(settings, baseline if baseline is not None else Settings())
    return " · ".join([job.label, settings.method, *words])


def unique_name(viewer, name: str) -> str:
    """``name``, or "name (2)", "name (3)", ... where a layer of the viewer has it already (or a
    run's iterate: "name · step 5")."""
    taken = {layer.name for layer in viewer.layers}
    candidate, number = name, 1
    while candidate in taken or any(t.startswith(candidate + " · step ") for t in taken):
        number += 1
        candidate = f"{name} ({number})"
    return candidate


def result_layer_kwargs(job: Job, iterate, settings: Settings) -> dict:
    """Name, placement, display and provenance of the layer for one emitted iterate."""
    content = job.content
    grayscale = content.data.ndim == 2 or (content.data.ndim == 3 and not content.rgb)
    metadata = _provenance(job, settings, step=iterate.step, total_steps=iterate.total_steps,
                           losses=dict(iterate.losses or {}), elapsed_s=round(iterate.elapsed, 3),
                           **iterate.info)
    name = job.name or job.label
    if iterate.total_steps > 1:  # the step last: "astronaut × starry_night · optimize · step 5"
        name += f" · step {iterate.step}"
    return dict(name=name, metadata=metadata,
                **_placement(content.scale, content.translate, content.data.shape[:2],
                             iterate.image.shape[:2]),
                **_display(iterate.image, grayscale, content.window, settings))


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
    record = {**records[-1], "iterates": [
        {"step": r["step"], "losses": r["losses"], "elapsed_s": r["elapsed_s"]} for r in records]}
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
    viewer.dims.set_point(list(viewer.dims.axis_labels).index(STEP_AXIS),
                          first + step_scale * (len(layers) - 1))  # the last step
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

    return resize(image, shape, order=1, preserve_range=True,
                  anti_aliasing=False).astype(image.dtype)


# --- whole stacks: one result layer, filled in place as planes finish ---------------------------

class StackSource(LayerSnapshot):
    """A content layer's whole data for a stack run: referred to, not copied (a stack may be
    bigger than memory; the engine reads it plane by plane and never writes to it), with the
    layer's full scale and translate. A multiscale layer gives its full-resolution level."""

    @property
    def planes(self) -> int:
        """How many 2-D planes the stack holds (1 for a single image)."""
        return math.prod(self.data.shape[:self.data.ndim - (3 if self.rgb else 2)])


@dataclass
class StackJob:
    """One content stack with one style image; ``result`` is its one layer once the run has
    allocated the output."""

    content: StackSource
    style: LayerSnapshot
    out: Any = None
    result_ref: weakref.ref | None = field(default=None, repr=False)
    run: Any = field(default=None, repr=False)  # its StackRun until the run has closed
    regions: LayerSnapshot | None = None  # the Labels layer's whole data (not copied)

    @property
    def results(self) -> list:
        layer = self.result_ref() if self.result_ref is not None else None
        return [] if layer is None else [layer]

    def release(self) -> None:
        self.content.data = self.style.data = None
        if self.regions is not None:
            self.regions.data = None

    @property
    def label(self) -> str:
        return f"{self.content.name} × {self.style.name}"


def stack_source(layer) -> StackSource:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    window = tuple(float(v) for v in layer.contrast_limits) if layer.contrast_limits else None
    return StackSource(name=layer.name, data=data, window=window, rgb=bool(layer.rgb),
                       scale=tuple(layer.scale), translate=tuple(layer.translate),
                       layer_ref=_weak(layer))


def make_stack_jobs(viewer, content, style, out=None, regions=None) -> list[StackJob]:
    """One job per (content stack, style) pair (with ``regions``: per content stack, the
    Labels layer's labels for every plane); ``out`` (a path for the result's zarr store) only
    where there is one pair."""
    contents = [stack_source(layer) for layer in _image_layers(viewer, content)]
    if regions is not None:
        layer = _labels_layer(viewer, regions)
        labels = LayerSnapshot(name=layer.name, data=layer.data, window=None, rgb=False,
                               scale=tuple(layer.scale), translate=tuple(layer.translate))
        styles = [region_styles(viewer, style)]
    else:
        labels, styles = None, _style_snapshots(viewer, style)
    if out is not None and len(contents) * len(styles) > 1:
        raise ValueError(f"out={out!r} names one store, but {len(contents)} content and "
                         f"{len(styles)} style layer(s) make {len(contents) * len(styles)} "
                         "results; run them one at a time, or leave out=None (temporary stores)")
    return [StackJob(c, s, out, regions=labels) for c in contents for s in styles]


def add_stack_layer(viewer, job: StackJob, run, settings: Settings, baseline=None):
    """The job's result layer, added on top and selected before any plane is done: the run's
    output (a lazy dask view of a zarr store, or an array) with the content's axes, placed over
    it, filled in as planes finish (``show_plane_done``)."""
    from napari.layers import Image

    output = run.output
    if type(output).__module__.startswith("zarr"):
        import dask.array as da

        data = da.from_zarr(output)
        store = str(getattr(output.store, "root", output.store))  # a local store: its folder
    else:
        data, store = output, None
    content = job.content
    plane_in = content.data.shape[-3:-1] if content.rgb else content.data.shape[-2:]
    name = unique_name(viewer, f"{run_name(job, run.settings, baseline)} · whole stack")
    metadata = _provenance(job, run.settings, scope="stack", planes=run.total, planes_done=0,
                           store=store, temporal_weight=run.temporal_weight, run=name,
                           label=name.removeprefix(f"{job.label} · "))
    layer = Image(name=name, metadata=metadata,
                  **_placement(content.scale, content.translate, plane_in, output.shape[-3:-1]),
                  **_display(data, not content.rgb, content.window, settings))
    viewer.layers.append(layer)
    viewer.layers.selection.active = layer
    job.result_ref = _weak(layer)
    job.run = run
    return layer


def show_stack_finished(job: StackJob) -> None:
    """After the run has closed: the planes that finished after a Stop are in the output too, so
    the layer shows them and its metadata counts them; the job lets go of its run."""
    run, job.run = job.run, None
    for layer in job.results:
        if run is not None:
            layer.metadata["napari_nst"]["planes_done"] = run.done
        layer.refresh()


def show_plane_done(job: StackJob, plane) -> None:
    """Redraw the job's layer (the finished plane is read from the output) and record progress
    and provenance in its metadata."""
    for layer in job.results:
        record = layer.metadata["napari_nst"]
        record.update(planes_done=plane.done, elapsed_s=round(plane.elapsed, 3), **plane.info)
        layer.refresh()
