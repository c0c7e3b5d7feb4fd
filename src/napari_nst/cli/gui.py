"""``napari-nst gui``: napari with the Style transfer widget, at a useful size; without a
display, one line instead of Qt aborting the process."""

from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail

#: Qt platforms that draw on an X11 or Wayland display; any other (offscreen, minimal, vnc,
#: eglfs, linuxfb, ...) needs none.
_DISPLAY_PLATFORMS = {
    "xcb": "DISPLAY",
    "wayland": "WAYLAND_DISPLAY",
    "wayland-egl": "WAYLAND_DISPLAY",
}
#: The window ``napari-nst gui`` opens: room for the layer list, the canvas and the widget.
GUI_SIZE = (1500, 950)


def display_problem(environ=None, platform: str | None = None) -> str | None:
    """Why Qt cannot open a window here, or None. On Linux (and the BSDs) Qt aborts the process
    with a long message when there is no display; this says it in one line beforehand."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not (platform.startswith("linux") or "bsd" in platform):
        return None  # Windows and macOS always have their native platform
    requested = [
        name.split(":")[0].strip() for name in environ.get("QT_QPA_PLATFORM", "").split(";")
    ]
    requested = [name for name in requested if name] or ["xcb", "wayland"]  # Qt's own choice
    if any(
        environ.get(_DISPLAY_PLATFORMS.get(name, ""), "") or name not in _DISPLAY_PLATFORMS
        for name in requested
    ):
        return None
    return (
        "napari-nst gui needs a display: run it on a desktop, or under xvfb-run "
        f"(no {' or '.join(sorted({_DISPLAY_PLATFORMS[name] for name in requested}))} is set)"
    )


def gui_command(args: argparse.Namespace) -> int:
    problem = display_problem()
    if problem:
        return fail(problem, EXIT_FAILED)
    from ..io import read_stack

    try:
        images = [(read_stack(path), path.stem) for path in args.images]
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        import napari
    except ImportError as exc:
        return fail(
            f"napari with a Qt binding is needed ({exc}); pip install 'napari-nst[qt]'", EXIT_FAILED
        )
    viewer = napari.Viewer(title="napari-nst")
    for data, name in images:
        viewer.add_image(data, name=name)
    if not images:
        viewer.open_sample("napari-nst", "astronaut_painting")
    viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    open_at_a_useful_size(viewer)
    napari.run()
    return EXIT_OK


def open_at_a_useful_size(viewer) -> tuple[int, int]:
    """Size the window to ``GUI_SIZE`` (within the screen) and fit the view to every layer once
    the window has its size: napari opens small and fits to the first layer only (the sample's
    style, beside the content, was cut off). Returns the (width, height) asked for."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    width, height = GUI_SIZE
    if screen is not None:
        available = screen.availableGeometry()
        width, height = (
            min(width, int(available.width() * 0.95)),
            min(height, int(available.height() * 0.95)),
        )
    viewer.window.resize(width, height)
    viewer.reset_view()
    QTimer.singleShot(0, viewer.reset_view)  # again once the canvas has its new size
    return width, height
