"""Side-by-side comparison in napari's grid mode: one row per content, its columns the content
itself and its final result with each style. Turning it off restores the previous view."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ViewState:
    grid: tuple  # (enabled, shape, stride)
    order: list  # the layers, bottom to top
    visible: list  # their visibility, same order


# Layers are compared with == and found with index(), never by id(): napari hands plugins proxies
# of its viewer, and each access returns a new proxy object for the same layer.


def _grid(viewer):
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def comparison_table(jobs) -> list[list]:
    """Rows of layers: [content, result with style 1, result with style 2, ...] per content."""
    rows: dict = {}
    for job in jobs:
        if not job.results:
            continue
        row = rows.setdefault(job.content.name + job.content.slice_label, [job.content.layer])
        row.append(job.results[-1])
    return list(rows.values())


def show_comparison(viewer, jobs) -> ViewState | None:
    """Arrange the final results in a content × style grid; returns what ``restore_view`` needs."""
    grid = _grid(viewer)
    state = ViewState((grid.enabled, tuple(grid.shape), grid.stride), list(viewer.layers),
                      [layer.visible for layer in viewer.layers])
    rows = [[layer for layer in row if layer is not None and layer in viewer.layers]
            for row in comparison_table(jobs)]
    rows = [row for row in rows if row]
    if not rows:
        return None
    columns = max(len(row) for row in rows)
    cells = [layer for row in rows for layer in row]
    # napari fills the grid from the bottom of the layer list, row by row, visible layers only
    for position, layer in enumerate(cells):
        viewer.layers.move(viewer.layers.index(layer), position)
    for position, layer in enumerate(viewer.layers):
        layer.visible = position < len(cells)
    grid.stride = 1
    grid.shape = (len(rows), columns)
    grid.enabled = True
    viewer.reset_view()
    return state


def restore_view(viewer, state: ViewState | None) -> None:
    """Put back the grid settings, layer order and visibility saved by ``show_comparison``."""
    if state is None:
        return
    grid = _grid(viewer)
    present = [(layer, visible) for layer, visible in zip(state.order, state.visible)
               if layer in viewer.layers]
    for position, (layer, visible) in enumerate(present):
        viewer.layers.move(viewer.layers.index(layer), position)
        viewer.layers[position].visible = visible
    grid.enabled, grid.shape, grid.stride = state.grid[0], state.grid[1], state.grid[2]
    viewer.reset_view()
