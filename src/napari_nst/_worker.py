"""The worker: ``run_in_viewer`` runs style transfer in a napari ``thread_worker``, one code path
for the widget and the console.

The engine runs in a generator ``thread_worker`` (torch is imported only there); on the main
thread every emitted iterate becomes a new Image layer, or, for a whole stack, one layer is
filled in as its planes finish (``_stack_layers``).

A finished worker is never freed: napari's task registry (of the window that was current when
the worker was made) keeps it, and with it ``worker.jobs``. So a run lets go of everything heavy
as it ends: the input copies, the engine's generator (a stopped one would keep its tensors) and
its callbacks (which hold the viewer and the widget). What napari keeps is then a small Python
object a run (its worker and progress object; upstream: napari/napari#4069, progress instances
kept), and the memory the run freed is handed back to the system as it ends (``_close``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref

from ._activity_dock import ActivityDockBar
from ._jobs import Job, job_settings, make_jobs
from ._result_layers import add_result_layer, fold_iterates
from ._stack_layers import (
    StackJob,
    add_stack_layer,
    make_stack_jobs,
    show_plane_done,
    show_stack_finished,
)
from ._status_spinner import status_spinners
from .settings import Settings, make_settings


class RunFailed(Exception):
    """A failure inside the worker (weights, memory, device), carried out to the main thread."""


SCOPES = ("slice", "stack")
#: What becomes of a run's iterate layers once the run ends (each is a layer while it runs).
ITERATES = ("fold", "keep")


def run_in_viewer(
    viewer,
    content,
    style,
    settings: Settings | None = None,
    *,
    scope: str = "slice",
    out=None,
    client=None,
    temporal_weight: float | None = None,
    start: bool = True,
    on_iterate=None,
    regions=None,
    iterates: str = "fold",
    baseline: Settings | None = None,
    **overrides,
):
    """Stylize ``content`` with ``style`` in a worker thread.

    ``content`` and ``style`` are Image layers or layer names, or lists of them: every content is
    run with every style, one after another in one worker. Settings are as for
    ``napari_nst.iterate``. ``scope``:

    * ``"slice"``: the 2-D image on screen (the displayed slice of a stack); each emitted iterate
      becomes a new layer.
    * ``"stack"``: every plane of the content layer (``napari_nst.iter_stack``), into ONE layer
      with the content's axes, created when the run starts and filled in as each plane finishes
      (scroll through it while it runs). Results go to a zarr store at ``out`` (default: a new
      temporary one), shown as a lazy view of it. ``client``: a ``dask.distributed`` Client or a
      scheduler address, to run the planes on a cluster. ``temporal_weight``: how strongly each
      plane keeps to the previous one (``iter_stack``; None: the method's default, 0: planes on
      their own, e.g. tiles or positions). The style is the slice on screen.

    ``iterates``: "fold" (default): when a run ends (done, stopped or failed), its iterate
    layers become one layer with a "step" slider, named after the run; "keep": they stay layers
    of their own. Result names say the pair, the method and the settings that differ from
    ``baseline`` (default: the API's defaults), e.g. "astronaut × starry_night · predict ·
    strength 0.3", made unique with " (2)".

    ``regions``: a Labels layer (or its name) whose labels say which style goes where, with
    ``style`` a dict {label: Image layer (or a list, blended)}, or one style for every
    non-zero label; unlisted labels keep the content (``napari_nst.stylize``'s ``regions``).

    Returns the started ``GeneratorWorker`` (``worker.quit()`` stops at the next step or plane
    and keeps what was added); the jobs and their result layers are on ``worker.jobs``.
    ``on_iterate(job, item)`` is called on the main thread for every step (a ``StepResult``) or,
    for stacks, every finished plane (a ``PlaneDone``). Closing the viewer's window stops the
    worker, and nothing is added to it after the close.
    """
    settings = make_settings(settings, **overrides)
    if iterates not in ITERATES:
        raise ValueError(
            f"iterates={iterates!r} is not supported; choose one of {', '.join(ITERATES)}"
        )
    if scope == "slice":
        plan = _slice_run(viewer, content, style, regions, settings, baseline, iterates)
    elif scope == "stack":
        plan = _stack_run(
            viewer, content, style, out, regions, settings, baseline, client, temporal_weight
        )
    else:
        raise ValueError(f"scope={scope!r} is not supported; choose one of {', '.join(SCOPES)}")
    jobs, total, events, show, when_closed, when_finished = plan
    return _start_worker(
        viewer, jobs, settings, events, total, show, on_iterate, start, when_closed, when_finished
    )


def _slice_run(viewer, content, style, regions, settings, baseline, iterates):
    """(jobs, total, events, show, when_closed, when_finished) of a run on the slices on
    screen: a layer per emitted iterate, folded as each job ends (``iterates="fold"``)."""
    jobs = make_jobs(viewer, content, style, regions)
    total = settings.total_steps() * len(jobs)
    events = _run_jobs(jobs, settings)

    def show(job, iterate):
        if iterate.emitted:
            add_result_layer(viewer, job, iterate, settings, baseline)
            if iterate.done and iterates == "fold":  # tidy now: a batch goes on
                fold_iterates(viewer, job)
        return iterate

    def fold_the_rest():  # a stopped or failed run's iterates: folded too, none lost
        for job in jobs:
            if not job.folded:
                fold_iterates(viewer, job)

    return jobs, total, events, show, None, fold_the_rest if iterates == "fold" else None


def _stack_run(viewer, content, style, out, regions, settings, baseline, client, temporal_weight):
    """(jobs, total, events, show, when_closed, when_finished) of a run on whole stacks: one
    layer per job, added when its output is allocated, redrawn as planes finish."""
    from .engine.stack import StackRun

    jobs = make_stack_jobs(viewer, content, style, out, regions)
    total = sum(job.content.planes for job in jobs)
    events = _run_stack_jobs(jobs, settings, client, temporal_weight)

    def show(job, event):
        if isinstance(event, StackRun):  # the output is allocated: the layer can show it
            add_stack_layer(viewer, job, event, settings, baseline)
            return None
        show_plane_done(job, event)
        return event

    def when_closed():  # the planes under way at a Stop were finished and kept meanwhile
        for job in jobs:
            show_stack_finished(job)

    return jobs, total, events, show, when_closed, None


def _start_worker(
    viewer,
    jobs,
    settings,
    events,
    total,
    show,
    on_iterate,
    start,
    when_closed=None,
    when_finished=None,
):
    """A thread worker over ``events`` ((job, event) pairs made in its thread); ``show(job,
    event)`` turns each into layers on the main thread and returns what ``on_iterate`` gets.
    ``when_closed()`` runs on the main thread once ``events`` is closed after the run;
    ``when_finished()`` on the main thread as the worker finishes, before any slot connected
    to ``worker.finished`` later (the widget's)."""
    from napari.qt.threading import thread_worker
    from qtpy.QtCore import Qt

    @thread_worker(
        progress={"total": total, "desc": "Style transfer"}, start_thread=False, ignore_errors=True
    )
    def work():
        yield from events

    worker = work()
    window = _WindowWatch(viewer, worker)

    def on_yielded(item):
        if window.closed:  # queued before the close: the viewer is gone
            worker.quit()
            return
        job, event = item
        progress = show(job, event)
        if on_iterate is not None and progress is not None:
            on_iterate(job, progress)

    def release():
        """After the last callback: napari keeps the worker, so let go of what the run held."""
        worker.yielded.disconnect(on_yielded)
        if when_finished is not None and not window.closed:
            try:
                when_finished()
            except Exception as exc:  # a Qt slot: an exception would abort the process
                warnings.warn(
                    f"napari-nst: tidying the run's layers failed ({exc!r}); its "
                    "layers are kept as they are",
                    RuntimeWarning,
                    stacklevel=1,
                )
        window.disconnect()
        for job in jobs:
            job.release()

    worker.yielded.connect(on_yielded)
    worker.errored.connect(_show_failure)
    # in the worker's thread as it ends: a stopped generator keeps its frame (the engine's tensors)
    # until closed, and its context managers (torch's modes are per thread) exit where they entered
    closed = None
    if when_closed is not None:
        from superqt.utils import ensure_main_thread

        closed = ensure_main_thread(when_closed)
    worker.finished.connect(
        functools.partial(_close, events, closed), Qt.ConnectionType.DirectConnection
    )
    worker.finished.connect(release)
    worker.jobs = jobs
    worker.settings = settings
    worker.started.connect(status_spinners.pause)
    worker.finished.connect(status_spinners.resume)
    if start:
        worker.start()
    return worker


@contextlib.contextmanager
def _failures_carried_out():
    """superqt takes a RuntimeError leaving a worker for a deleted Qt object and drops it without
    emitting errored or finished; torch and the weights loader raise these."""
    try:
        yield
    except RuntimeError as exc:
        raise RunFailed(f"{exc.__class__.__name__}: {exc}") from exc


def _run_jobs(jobs: list[Job], settings: Settings):
    """(job, iterate) for every step of every job; iterated in the worker thread."""
    from .engine.run import run_steps
    from .engine.weights import download_progress

    with _failures_carried_out(), download_progress(ActivityDockBar):
        for job in jobs:
            run = run_steps(job.content.data, job.style.data, job_settings(settings, job))
            with contextlib.closing(run):
                for iterate in run:
                    yield job, iterate


def _run_stack_jobs(jobs: list[StackJob], settings: Settings, client, temporal_weight=None):
    """For each job (in the worker thread): its ``StackRun`` once the output is allocated, then a
    ``PlaneDone`` per finished plane. A scheduler address is connected to here, and closed."""
    from .engine.stack import iter_stack, temporary_store
    from .engine.weights import download_progress

    with (
        _failures_carried_out(),
        download_progress(ActivityDockBar),
        _connected(client) as connected,
    ):
        for job in jobs:
            run = iter_stack(
                job.content.data,
                job.style.data,
                client=connected,
                out=job.out if job.out is not None else temporary_store(),
                settings=job_settings(settings, job),
                temporal_weight=temporal_weight,
            )
            yield job, run
            planes = iter(run)
            with contextlib.closing(planes):
                for plane in planes:
                    yield job, plane


@contextlib.contextmanager
def _connected(client):
    """``client`` as a dask.distributed Client: as given, or connected to an address and closed
    at the end; None stays None (dask's local scheduler)."""
    if not isinstance(client, str):
        yield client
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise RunFailed(
            "running on a dask scheduler needs the distributed package: "
            "pip install 'napari-nst[distributed]'"
        ) from exc
    connected = Client(client, timeout="10s")
    try:
        yield connected
    finally:
        connected.close()


def _close(generator, then=None) -> None:
    """Close a worker's generator, then call ``then``; a failure while it cleans up is reported,
    not raised (this runs in a Qt slot, where an exception would abort the process)."""
    try:
        generator.close()
    except Exception as exc:
        warnings.warn(
            f"napari-nst: closing a finished run failed: {exc!r}", RuntimeWarning, stacklevel=1
        )
    from .engine.memory import release_freed_memory

    # each Qt pool thread has a glibc malloc arena of its own, which would keep what this run
    # freed (tens of MB a thread, issue 31); this runs in the worker's thread as it ends
    release_freed_memory()
    if then is not None:
        then()


def _show_failure(exc) -> None:
    from napari.utils.notifications import show_error

    show_error(f"Style transfer failed: {exc}")


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
