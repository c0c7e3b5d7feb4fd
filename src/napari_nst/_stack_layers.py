"""Whole stacks: one result layer, filled in place as planes finish.

A stack run refers to its content layer's data (a stack may be bigger than memory), and its one
result layer shows the run's output (a lazy view of a zarr store, or an array) from the start.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

from ._jobs import (
    LayerSnapshot,
    ReleasesInputs,
    image_layers,
    labels_layer,
    region_styles,
    style_snapshots,
    weak_ref,
)
from ._naming import run_name, unique_name
from ._result_layers import display, placement, provenance
from .settings import Settings


class StackSource(LayerSnapshot):
    """A content layer's whole data for a stack run: referred to, not copied (a stack may be
    bigger than memory; the engine reads it plane by plane and never writes to it), with the
    layer's full scale and translate. A multiscale layer gives its full-resolution level."""

    @property
    def planes(self) -> int:
        """How many 2-D planes the stack holds (1 for a single image)."""
        return math.prod(self.data.shape[: self.data.ndim - (3 if self.rgb else 2)])


@dataclass
class StackJob(ReleasesInputs):
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

    @property
    def label(self) -> str:
        return f"{self.content.name} × {self.style.name}"


def stack_source(layer) -> StackSource:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    window = tuple(float(v) for v in layer.contrast_limits) if layer.contrast_limits else None
    return StackSource(
        name=layer.name,
        data=data,
        window=window,
        rgb=bool(layer.rgb),
        scale=tuple(layer.scale),
        translate=tuple(layer.translate),
        layer_ref=weak_ref(layer),
    )


def make_stack_jobs(viewer, content, style, out=None, regions=None) -> list[StackJob]:
    """One job per (content stack, style) pair (with ``regions``: per content stack, the
    Labels layer's labels for every plane); ``out`` (a path for the result's zarr store) only
    where there is one pair."""
    contents = [stack_source(layer) for layer in image_layers(viewer, content)]
    if regions is not None:
        layer = labels_layer(viewer, regions)
        labels = LayerSnapshot(
            name=layer.name,
            data=layer.data,
            window=None,
            rgb=False,
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
        )
        styles = [region_styles(viewer, style)]
    else:
        labels, styles = None, style_snapshots(viewer, style)
    if out is not None and len(contents) * len(styles) > 1:
        raise ValueError(
            f"out={out!r} names one store, but {len(contents)} content and "
            f"{len(styles)} style layer(s) make {len(contents) * len(styles)} "
            "results; run them one at a time, or leave out=None (temporary stores)"
        )
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
    metadata = provenance(
        job,
        run.settings,
        scope="stack",
        planes=run.total,
        planes_done=0,
        store=store,
        temporal_weight=run.temporal_weight,
        run=name,
        label=name.removeprefix(f"{job.label} · "),
    )
    layer = Image(
        name=name,
        metadata=metadata,
        **placement(content.scale, content.translate, plane_in, output.shape[-3:-1]),
        **display(data, not content.rgb, content.window, settings),
    )
    viewer.layers.append(layer)
    viewer.layers.selection.active = layer
    job.result_ref = weak_ref(layer)
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
