"""A progress bar in napari's activity dock that a worker thread can drive."""

from __future__ import annotations

import queue


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
