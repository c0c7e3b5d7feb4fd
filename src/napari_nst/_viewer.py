"""Run style transfer in a napari viewer: one code path for the widget and the console.

``run_in_viewer`` snapshots the input layers on the main thread (so removing, renaming or editing
them mid-run changes nothing), runs the engine in a generator ``thread_worker`` and turns every
emitted iterate into a new Image layer. torch is imported only inside the worker.

A finished worker is never freed: napari's task registry (of the window that was current when
the worker was made) keeps it, and with it ``worker.jobs``. So a run lets go of everything heavy
as it ends: the input copies, the engine's generator (a stopped one would keep its tensors) and
its callbacks (which hold the viewer and the widget); jobs refer to layers weakly, so a deleted
result layer is freed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import queue
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np

from ._status_spinner import status_spinners
from .settings import Settings, make_settings

_VERSIONED = ("napari-nst", "torch", "torchvision", "napari", "numpy")


class RunFailed(Exception):
    """A failure inside the worker (weights, memory, device), carried out to the main thread."""


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
    data: np.ndarray | None
    window: tuple | None
    rgb: bool
    scale: tuple
    translate: tuple
    slice_label: str = ""
    layer_ref: weakref.ref | None = field(default=None, repr=False, compare=False)

    @property
    def layer(self):
        """The source layer (shown in the comparison grid), or None once it is gone."""
        return self.layer_ref() if self.layer_ref is not None else None


@dataclass
class Job:
    content: LayerSnapshot
    style: LayerSnapshot
    result_refs: list = field(default_factory=list, repr=False)  # weak, in order of steps

    @property
    def results(self) -> list:
        """The result layers in order of steps; a deleted one is left out once it is freed (the
        job does not keep it alive)."""
        return [layer for layer in (ref() for ref in self.result_refs) if layer is not None]

    def add_result(self, layer) -> None:
        self.result_refs.append(_weak(layer))

    def release(self) -> None:
        """Drop the input copies, once the run has ended."""
        self.content.data = self.style.data = None

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
        if isinstance(item, str):
            if item not in viewer.layers:
                raise ValueError(f"there is no layer named {item!r} in the viewer")
            item = viewer.layers[item]
        if not isinstance(item, Image):
            raise ValueError(f"layer {getattr(item, 'name', item)!r} is a "
                             f"{type(item).__name__} layer; style transfer needs Image layers")
        found.append(item)
    return found


def snapshot_layer(viewer, layer) -> LayerSnapshot:
    """A copy of the 2-D image on screen: the displayed slice of a z/t stack, with its window."""
    spatial_ndim = layer.data.ndim - (1 if layer.rgb else 0)
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
    window = tuple(float(v) for v in layer.contrast_limits) if layer.contrast_limits else None
    return LayerSnapshot(
        name=layer.name, data=data, window=window, rgb=bool(layer.rgb),
        scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
        slice_label=label, layer_ref=_weak(layer))


@functools.cache
def _versions() -> dict:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def result_layer_kwargs(job: Job, iterate, settings: Settings) -> dict:
    """Name, placement, display and provenance of the layer for one emitted iterate.

    With ``output_range="content"`` the result is in its content's intensity range, so it gets the
    content layer's contrast limits and looks like it; RGBA results keep their alpha (rgb=True).
    """
    content = job.content
    image = iterate.image
    height, width = content.data.shape[:2]
    factor = (height / image.shape[0], width / image.shape[1])
    scale = tuple(s * f for s, f in zip(content.scale, factor))
    # pixel centres: result pixel i covers content pixels [i·f, (i+1)·f) in data units
    translate = tuple(t + s * (f - 1) / 2 for t, s, f in zip(content.translate, content.scale, factor))
    grayscale = content.data.ndim == 2 or (content.data.ndim == 3 and not content.rgb)
    metadata = {"napari_nst": {
        "content": content.name + content.slice_label, "style": job.style.name,
        "step": iterate.step, "total_steps": iterate.total_steps,
        "losses": dict(iterate.losses or {}), "elapsed_s": round(iterate.elapsed, 3),
        "settings": settings.to_metadata(), "seed": settings.seed,
        **iterate.info, "versions": _versions(),
    }}
    # short enough to read in the layer list: "astronaut × painting 25" (the step last)
    kwargs = dict(name=f"{job.label} {iterate.step}", scale=scale, translate=translate,
                  metadata=metadata)
    limits = (0.0, 1.0)
    if settings.output_range == "content" and content.window is not None:
        limits = content.window
    if grayscale:
        return dict(kwargs, data=image[..., 0], rgb=False, colormap="gray", contrast_limits=limits)
    return dict(kwargs, data=image, rgb=True, contrast_limits=limits)


def _add_result(viewer, job: Job, iterate, settings: Settings):
    """Add the iterate's layer on top of the layer list and select it, as napari does with every
    new layer: a result placed lower is hidden by whatever lies above it (a new user then sees
    "done" and an unchanged canvas). The previous iterate is hidden first, so only the newest is
    drawn; older ones stay in the list, one click from view.

    napari's own work per inserted layer (vispy visuals, layer controls, selection) dominates the
    main thread's time during a run; one insert, and no redraw of the layer being hidden, keep it
    to the minimum (measured in benchmarks/bench_worker.py).
    """
    from napari.layers import Image

    layer = Image(**result_layer_kwargs(job, iterate, settings))
    previous = job.results[-1] if job.results else None
    if previous is not None and previous in viewer.layers:
        previous.visible = False
    viewer.layers.append(layer)
    viewer.layers.selection.active = layer
    job.add_result(layer)
    return layer


def make_jobs(viewer, content, style) -> list[Job]:
    """One job per (content, style) pair, contents outermost; inputs are snapshotted now."""
    contents = [snapshot_layer(viewer, layer) for layer in _image_layers(viewer, content)]
    styles = [snapshot_layer(viewer, layer) for layer in _image_layers(viewer, style)]
    return [Job(c, s) for c in contents for s in styles]


def run_in_viewer(viewer, content, style, settings: Settings | None = None, *, start: bool = True,
                  on_iterate=None, **overrides):
    """Stylize ``content`` with ``style`` in a worker thread, adding each emitted iterate as a layer.

    ``content`` and ``style`` are Image layers or layer names, or lists of them: every content is
    run with every style, one after another in one worker. Settings are as for
    ``napari_nst.iterate``. Returns the started ``GeneratorWorker`` (``worker.quit()`` stops at the
    next step and keeps the layers already added); the jobs and their result layers are on
    ``worker.jobs``. ``on_iterate(job, iterate)`` is called on the main thread for every step.
    Closing the viewer's window stops the worker, and nothing is added to it after the close.
    """
    from napari.qt.threading import thread_worker
    from qtpy.QtCore import Qt

    settings = make_settings(settings, **overrides)
    jobs = make_jobs(viewer, content, style)
    steps_per_job = 1 if settings.method == "predict" else settings.steps
    steps = _run_jobs(jobs, settings)

    @thread_worker(progress={"total": steps_per_job * len(jobs), "desc": "Style transfer"},
                   start_thread=False, ignore_errors=True)
    def work():
        yield from steps

    worker = work()
    window = _WindowWatch(viewer, worker)

    def on_yielded(item):
        if window.closed:  # queued before the close: the viewer is gone
            worker.quit()
            return
        job, iterate = item
        if iterate.emitted:
            _add_result(viewer, job, iterate, settings)
        if on_iterate is not None:
            on_iterate(job, iterate)

    def release():
        """After the last callback: napari keeps the worker, so let go of what the run held."""
        worker.yielded.disconnect(on_yielded)
        window.disconnect()
        for job in jobs:
            job.release()

    worker.yielded.connect(on_yielded)
    worker.errored.connect(_show_failure)
    # in the worker's thread as it ends: a stopped generator keeps its frame (the engine's tensors)
    # until closed, and its context managers (torch's modes are per thread) exit where they entered
    worker.finished.connect(functools.partial(_close, steps), Qt.ConnectionType.DirectConnection)
    worker.finished.connect(release)
    worker.jobs = jobs
    worker.settings = settings
    worker.started.connect(status_spinners.pause)
    worker.finished.connect(status_spinners.resume)
    if start:
        worker.start()
    return worker


def _run_jobs(jobs: list[Job], settings: Settings):
    """(job, iterate) for every step of every job; iterated in the worker thread."""
    from .engine.run import run_steps
    from .engine.weights import download_progress

    try:
        with download_progress(ActivityDockBar):
            for job in jobs:
                run = run_steps(job.content.data, job.style.data, _job_settings(settings, job))
                with contextlib.closing(run):
                    for iterate in run:
                        yield job, iterate
    except RuntimeError as exc:
        # superqt takes a RuntimeError leaving a worker for a deleted Qt object and drops it
        # without emitting errored or finished; torch and the weights loader raise these.
        raise RunFailed(f"{exc.__class__.__name__}: {exc}") from exc


def _close(generator) -> None:
    """Close a worker's generator; a failure while it cleans up is reported, not raised (this
    runs in a Qt slot, where an exception would abort the process)."""
    try:
        generator.close()
    except Exception as exc:
        warnings.warn(f"napari-nst: closing a finished run failed: {exc!r}", RuntimeWarning,
                      stacklevel=1)


def _show_failure(exc) -> None:
    from napari.utils.notifications import show_error

    show_error(f"Style transfer failed: {exc}")


class ActivityDockBar:
    """A progress bar in napari's activity dock (a weights download: a long first wait), driven
    from the worker thread. napari's bars are Qt widgets, so the worker only queues what happened
    and asks the main thread to apply it; Qt does not keep separate such requests in order, so
    each one applies everything queued so far, in order. The worker never waits."""

    def __init__(self, total: int | None, description: str):
        self.bar = None
        self._applying = False
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        self._request("open", total, description)

    def update(self, n: int) -> None:
        self._request("update", n)

    def close(self) -> None:
        self._request("close")

    def _request(self, *operation) -> None:
        from superqt.utils import ensure_main_thread

        self._pending.put(operation)
        ensure_main_thread(self._apply)()

    def _apply(self) -> None:
        from napari.utils import progress

        if self._applying:  # napari processes events while it makes a bar: the outer call goes on
            return
        self._applying = True
        try:
            while True:
                try:
                    kind, *args = self._pending.get_nowait()
                except queue.Empty:
                    return
                if kind == "open":
                    self.bar = progress(total=args[0], desc=args[1])
                elif kind == "update":
                    self.bar.update(args[0])
                else:
                    self.bar.close()
        finally:
            self._applying = False


def _job_settings(settings: Settings, job: Job) -> Settings:
    return settings.replace(content_window=job.content.window, style_window=job.style.window)


def _main_window(viewer):
    """The viewer's Qt main window, through public attributes (napari's ``Window.main_menu`` is
    its menu bar), or None for a viewer without a window."""
    menu = getattr(getattr(viewer, "window", None), "main_menu", None)
    return menu.window() if menu is not None else None


class _WindowWatch:
    """Stops a worker when the application quits or its viewer's window closes, and says whether
    that window has closed, so that results the worker queued before the close are dropped.

    A close is seen at once: napari sets WA_DeleteOnClose on its main window, and Qt clears that
    flag when it accepts a close (``viewer.close()``, or the close button once confirmed) and
    schedules the deletion. The deletion (``destroyed``, which stops the worker even if it yields
    nothing more) comes in a later pass of the event loop. The window is held weakly, so a run
    does not keep a closed viewer alive.
    """

    def __init__(self, viewer, worker) -> None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QApplication

        self._worker = worker
        self._flag = Qt.WidgetAttribute.WA_DeleteOnClose
        self._destroyed = False
        self._app = QApplication.instance()
        if self._app is not None:
            self._app.aboutToQuit.connect(worker.quit)
        window = _main_window(viewer)
        self._window = weakref.ref(window) if window is not None else None
        self._deletes_on_close = window is not None and window.testAttribute(self._flag)
        if window is not None:
            window.destroyed.connect(self._on_destroyed)

    def _on_destroyed(self, _=None) -> None:
        self._destroyed = True
        self._worker.quit()

    @property
    def closed(self) -> bool:
        if self._window is None:
            return False
        window = self._window()
        if self._destroyed or window is None:
            return True
        try:
            return self._deletes_on_close and not window.testAttribute(self._flag)
        except RuntimeError:  # the Qt object is deleted
            return True

    def disconnect(self) -> None:
        """Drop the connections (the application's would pile up, one per run)."""
        window = self._window() if self._window is not None else None
        if self._app is not None:
            with contextlib.suppress(TypeError, RuntimeError):  # not connected
                self._app.aboutToQuit.disconnect(self._worker.quit)
        if window is not None:
            with contextlib.suppress(TypeError, RuntimeError):  # not connected, or deleted
                window.destroyed.disconnect(self._on_destroyed)
