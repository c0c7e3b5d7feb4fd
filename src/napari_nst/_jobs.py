"""The inputs of a run: copies of its input layers, taken when it starts, and its jobs.

Inputs are snapshotted on the main thread when a run starts (so removing, renaming or editing a
layer mid-run changes nothing). Jobs refer to layers weakly, so a deleted result layer is freed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .settings import Settings


def weak_ref(layer) -> weakref.ref | None:
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


class ReleasesInputs:
    """What every kind of job (a slice's, a whole stack's, a sweep's) does when its run ends:
    drop the input copies (each is the size of its input), regions too where there are some."""

    def release(self) -> None:
        self.content.data = self.style.data = None
        if getattr(self, "regions", None) is not None:
            self.regions.data = None


@dataclass
class Job(ReleasesInputs):
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
        self.result_refs.append(weak_ref(layer))

    def replace_results(self, layer) -> None:
        self.result_refs = [weak_ref(layer)]

    @property
    def run_label(self) -> str:
        """The name after the pair, "predict · strength 0.3": Compare's label of its cell."""
        return (self.name or "").removeprefix(f"{self.label} · ")

    @property
    def label(self) -> str:
        return f"{self.content.name}{self.content.slice_label} × {self.style.name}"


def image_layers(viewer, layers) -> list:
    """Image layers from a layer, a name, or a list of either; ValueError naming the problem."""
    from napari.layers import Image

    items = layers if isinstance(layers, (list, tuple)) else [layers]
    if not items:
        raise ValueError("no layer given; choose at least one Image layer")
    found = []
    for item in items:
        item = _named(viewer, item)
        if not isinstance(item, Image):
            raise ValueError(
                f"layer {getattr(item, 'name', item)!r} is a "
                f"{type(item).__name__} layer; style transfer needs Image layers"
            )
        found.append(item)
    return found


def _named(viewer, item):
    """The layer ``item`` names (a string), or ``item`` itself."""
    if isinstance(item, str):
        if item not in viewer.layers:
            raise ValueError(f"there is no layer named {item!r} in the viewer")
        return viewer.layers[item]
    return item


def labels_layer(viewer, layer):
    """A Labels layer from a layer or a name; ValueError naming the problem."""
    from napari.layers import Labels

    layer = _named(viewer, layer)
    if not isinstance(layer, Labels):
        raise ValueError(
            f"regions: layer {getattr(layer, 'name', layer)!r} is a "
            f"{type(layer).__name__} layer; regions come from a Labels layer"
        )
    return layer


def snapshot_layer(viewer, layer) -> LayerSnapshot:
    """A copy of the 2-D image on screen: the displayed slice of a z/t stack, with its window
    (a Labels layer: its labels, no window)."""
    spatial_ndim = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    index, label = (), ""
    if spatial_ndim > 2:
        point = layer.world_to_data(viewer.dims.point[-spatial_ndim:])
        leading = [
            int(np.clip(round(p), 0, n - 1))
            for p, n in zip(point[: spatial_ndim - 2], layer.data.shape[: spatial_ndim - 2])
        ]
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
        name=layer.name,
        data=data,
        window=window,
        rgb=bool(getattr(layer, "rgb", False)),
        scale=tuple(layer.scale[-2:]),
        translate=tuple(layer.translate[-2:]),
        slice_label=label,
        layer_ref=weak_ref(layer),
        dims=(tuple(viewer.dims.point), tuple(map(str, viewer.dims.axis_labels))),
    )


def make_jobs(viewer, content, style, regions=None) -> list[Job]:
    """One job per (content, style) pair, contents outermost; with ``regions`` (a Labels layer)
    one job per content, ``style`` a dict {label: Image layer}. Inputs are snapshotted now."""
    contents = [snapshot_layer(viewer, layer) for layer in image_layers(viewer, content)]
    if regions is None:
        return [Job(c, s) for c in contents for s in style_snapshots(viewer, style)]
    labels = snapshot_layer(viewer, labels_layer(viewer, regions))
    return [Job(c, region_styles(viewer, style), regions=labels) for c in contents]


def style_snapshots(viewer, style) -> list[LayerSnapshot]:
    if isinstance(style, dict):
        raise ValueError("style: a dict {label: layer} needs regions=<a Labels layer>")
    return [snapshot_layer(viewer, layer) for layer in image_layers(viewer, style)]


def region_styles(viewer, style) -> LayerSnapshot:
    """The styles of a run with regions as one snapshot: {label: the style layer's slice on
    screen, mapped to 0..1 by its own contrast limits} (each style keeps its own window), named
    "1=starry, 2=scream"."""
    if not isinstance(style, dict):  # one layer (or a list, blended) for every non-zero label
        snapshots = style_snapshots(viewer, style)
        data = [_windowed(s) for s in snapshots]
        return LayerSnapshot(
            name=" + ".join(s.name for s in snapshots),
            data=data if len(data) > 1 else data[0],
            window=None,
            rgb=True,
            scale=(1.0, 1.0),
            translate=(0.0, 0.0),
        )
    if not style:
        raise ValueError("style: no label has a style; give at least one label a style layer")
    data, names = {}, []
    for label, layer in style.items():
        snapshots = style_snapshots(viewer, layer)
        images = [_windowed(s) for s in snapshots]
        data[label] = images if len(images) > 1 else images[0]
        names.append(f"{label}={'+'.join(s.name for s in snapshots)}")
    return LayerSnapshot(
        name=", ".join(names),
        data=data,
        window=None,
        rgb=True,
        scale=(1.0, 1.0),
        translate=(0.0, 0.0),
    )


def _windowed(snapshot: LayerSnapshot) -> np.ndarray:
    """A style's pixels mapped by its layer's contrast limits, as the engine maps one style."""
    from .engine.images import prepare_image

    prepared = prepare_image(snapshot.data, snapshot.window, name=f"style {snapshot.name}")
    return prepared.rgb if not prepared.grayscale else prepared.rgb[..., 0]


def job_settings(settings: Settings, job) -> Settings:
    regions = None if job.regions is None else job.regions.data
    return settings.replace(
        content_window=job.content.window, style_window=job.style.window, regions=regions
    )
