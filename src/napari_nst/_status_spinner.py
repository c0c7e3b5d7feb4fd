"""napari's status-bar spinner, paused while style transfer runs: a workaround in one place, to be
deleted when napari stops repainting the whole window for it."""

from __future__ import annotations


class StatusSpinners:
    """Pauses the animated spinner in napari's status bar while style transfer runs.

    While any progress bar is open napari plays an "in progress" GIF (33 frames/s) in the status
    bar. Every frame recomposites the whole window, canvas included; with software OpenGL (remote
    desktops, Xvfb) that cost torch about a third of its throughput on a 2-core machine, and 5
    frames/s still cost a tenth (benchmarks/bench_worker.py). The activity dock's progress bar and
    the widget's status line still move at every step. Found with Qt's public API only (a QLabel
    playing a QMovie in a QMainWindow's status bar), so a napari without such a spinner is left as
    it is. Counted, so that overlapping runs resume it once, when the last one finishes.
    """

    def __init__(self) -> None:
        self._runs = 0
        self._paused: list = []

    @staticmethod
    def _movies() -> list:
        from qtpy.QtWidgets import QApplication, QLabel, QMainWindow

        app = QApplication.instance()
        windows = [w for w in (app.topLevelWidgets() if app else []) if isinstance(w, QMainWindow)]
        labels = [label for window in windows for label in window.statusBar().findChildren(QLabel)]
        return [label.movie() for label in labels if label.movie() is not None]

    def pause(self) -> None:
        from qtpy.QtGui import QMovie

        self._runs += 1
        for movie in self._movies():
            if movie.state() == QMovie.MovieState.Running:
                movie.setPaused(True)
                self._paused.append(movie)

    def resume(self) -> None:
        from qtpy.QtGui import QMovie

        self._runs = max(0, self._runs - 1)
        if self._runs:
            return
        for movie in self._paused:
            try:
                if movie.state() == QMovie.MovieState.Paused:  # napari stops it once no bar is left
                    movie.setPaused(False)
            except RuntimeError:  # its window was closed meanwhile
                pass
        self._paused.clear()


#: the one instance every run shares (runs overlap: it counts them)
status_spinners = StatusSpinners()
