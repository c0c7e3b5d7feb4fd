"""A sweep in napari: ``run_sweep_in_viewer`` runs ``engine.explore.iter_sweep`` in the worker
thread and lays each finished cell into napari's grid, in its row and column, with its label
on the canvas above it: the grid Compare uses too (``_grid.GridView``: a cell is an image
and its label, the view's layers sit at the bottom of the layer list, every other layer is
hidden while it is shown). ``SweepView.remove`` takes the sweep's layers away together and puts
the view back as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._grid import GridView
from ._jobs import LayerSnapshot, image_layers, snapshot_layer
from ._result_layers import placement, versions
from .settings import Settings, make_settings


@dataclass
class SweepJob:
    """The inputs of a sweep (copied at the start, released at the end), its ``Sweep`` and the
    view that shows it."""

    content: LayerSnapshot
    style: LayerSnapshot
    sweep: Any = None
    view: Any = None

    @property
    def label(self) -> str:
        return f"sweep {self.content.name} × {self.style.name}"

    @property
    def results(self) -> list:
        return [] if self.view is None else list(self.view.layers)

    def release(self) -> None:
        self.content.data = self.style.data = None


@dataclass
class SweepView(GridView):
    """The sweep's cells in napari's grid (``_grid.GridView``), each shown as it finishes."""

    kind: str = "sweep"
    #: The layer the cells are laid over (its scale and 2-D shape): each cell is shown at its
    #: size, so the grid's camera, which fits every layer, fits the cells.
    over: tuple = ((1.0, 1.0), None)

    def add_cell(self, sweep, cell, settings: Settings) -> None:
        """The finished ``cell`` (an ``explore.CellDone``) as its image and label layers, in
        its place: the cells before it in row-major order are below it in the list."""
        from napari.layers import Image

        image = np.asarray(cell.image)
        grayscale = bool(
            np.allclose(image[..., 0], image[..., 1:3].mean(axis=-1), atol=1e-6)
            and np.allclose(image[..., 1], image[..., 2], atol=1e-6)
        )
        metadata = {
            "napari_nst": {
                "sweep": self.name,
                "cell": [cell.row, cell.col],
                "label": cell.label,
                "seconds": round(cell.seconds, 3),
                "settings": settings.to_metadata(),
                "versions": versions(),
            }
        }
        data = (
            dict(data=image[..., 0], rgb=False, colormap="gray")
            if grayscale
            else dict(data=image, rgb=True)
        )
        scale, shape = self.over
        where = placement(tuple(scale), (0.0, 0.0), shape or image.shape[:2], image.shape[:2])
        picture = Image(
            name=f"{self.name}: {cell.label}",
            metadata=metadata,
            contrast_limits=(0.0, 1.0),
            **where,
            **data,
        )
        self.place(picture, sweep.short_label(cell.row, cell.col))
        self.size_labels()  # the longest label so far sets the size
        self.reselect()


def run_sweep_in_viewer(
    viewer,
    content,
    style,
    rows,
    cols=None,
    settings: Settings | None = None,
    *,
    max_cells: int | None = None,
    start: bool = True,
    on_cell=None,
    name: str = "sweep",
    title: str = "",
    reconstruct: str | None = None,
    **overrides,
):
    """Run a sweep (``napari_nst.sweep``) of the Image layers ``content`` and ``style`` (the
    slices on screen) in a worker thread, each cell shown in napari's grid as it finishes.

    ``reconstruct="content"`` or ``"style"``: Fig. 1's reconstructions of the content (or the
    style) layer instead, ``cols`` naming the layers. Everything is checked now, before any
    work (``ValueError``). Returns the worker; ``worker.jobs[0].sweep`` is the ``Sweep`` (its
    ``contact_sheet()``) and ``.view.remove()`` removes its layers together. ``worker.quit()``
    stops at the next step; the cells done stay."""
    from ._worker import _start_worker
    from .engine.explore import MAX_CELLS, CellDone, iter_sweep, reconstruction_sweep

    settings = make_settings(settings, **overrides)
    job = SweepJob(
        snapshot_layer(viewer, image_layers(viewer, content)[0]),
        snapshot_layer(viewer, image_layers(viewer, style)[0]),
    )
    options = dict(content_window=job.content.window, style_window=job.style.window)
    image_in, style_in = job.content.data, job.style.data
    if reconstruct is not None:  # from noise: the settings' own steps, size and network
        source = job.content if reconstruct == "content" else job.style
        layers = None if cols is None else [v[-1] for v in cols[1]]
        image_in, style_in, cols, extra = reconstruction_sweep(source.data, reconstruct, layers)
        options = {**extra, "content_window": source.window, "style_window": source.window}
    sweep, steps = iter_sweep(
        image_in,
        style_in,
        rows,
        cols,
        settings=settings,
        max_cells=MAX_CELLS if max_cells is None else max_cells,
        title=title,
        **options,
    )
    job.sweep = sweep
    source = job.content if reconstruct != "style" else job.style
    job.view = SweepView(
        viewer, sweep.shape, name, over=(source.scale, tuple(np.shape(source.data)[:2]))
    )
    job.view.show()
    total = int(sweep.done.size)

    def events():
        for event in steps:
            if isinstance(event, CellDone):
                yield job, event
        steps.close()

    def show(_, cell):
        job.view.add_cell(sweep, cell, settings)
        return cell

    return _start_worker(viewer, [job], settings, events(), total, show, on_cell, start)
