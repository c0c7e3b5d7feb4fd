"""The widget's explore section: one or two settings to sweep and their values (or a preset:
the paper's Fig. 3, Fig. 1's reconstructions, the methods side by side), Run sweep, and the
sweep's layers removed together or saved as one labelled contact sheet."""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, PushButton

from .engine.explore import MAX_CELLS, RECONSTRUCTION, describe
from .engine.explore_presets import PRESETS, cells_of, sweep_cost
from .registry import SWEEPABLE

_NONE = "(none)"


def _value_text(value) -> str:
    return (
        describe("x", value).split("=", 1)[1] if not isinstance(value, tuple) else ",".join(value)
    )


class ExplorePanel(Container):
    """``run()`` starts the sweep with the widget's first content and style layers and its
    settings; ``sheet()`` is the last sweep's contact sheet; ``remove()`` its layers."""

    def __init__(self, viewer, inputs, settings):
        super().__init__(labels=True)
        self._viewer, self._inputs, self._settings = viewer, inputs, settings
        self.worker = None
        self.job = None
        names = list(SWEEPABLE)
        self.preset = ComboBox(
            label="preset",
            value="custom",
            choices=[("custom", "custom"), *((title, key) for key, (title, *_) in PRESETS.items())],
            tooltip="the seed paper's comparisons: Fig. 3 (style layer sets x content/style "
            "ratio), Fig. 1 (reconstructions from noise), or the methods side by side",
        )
        self.rows = ComboBox(label="rows", choices=[_NONE, *names], value="style_strength")
        self.row_values = LineEdit(
            label="row values",
            value="0.25;0.5;1",
            tooltip="values separated by ';'; a layer set's layers by "
            "',' (conv1_1;conv1_1,conv2_1); 'growing' for the "
            "paper's five growing style layer sets",
        )
        self.cols = ComboBox(label="columns", choices=[_NONE, *names], value=_NONE)
        self.col_values = LineEdit(label="column values", value="")
        self.allow_many = CheckBox(value=False, text=f"allow more than {MAX_CELLS} cells")
        self.run_button = PushButton(text="Run sweep")
        self.stop_button = PushButton(text="Stop sweep", enabled=False)
        self.remove_button = PushButton(text="Remove sweep layers", enabled=False)
        self.save_button = PushButton(text="Save contact sheet…", enabled=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.preset,
                self.rows,
                self.row_values,
                self.cols,
                self.col_values,
                self.allow_many,
                Container(
                    widgets=[self.run_button, self.stop_button], layout="horizontal", labels=False
                ),
                Container(
                    widgets=[self.remove_button, self.save_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.status,
            ]
        )
        self.margins = (0, 0, 0, 0)
        self.preset.changed.connect(self._on_preset)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.remove_button.changed.connect(self.remove)
        self.save_button.changed.connect(self._ask_and_save)

    def _on_preset(self, key=None):
        if self.preset.value == "custom":
            return
        _, rows, cols, _ = PRESETS[self.preset.value]
        for combo, line, axis in (
            (self.rows, self.row_values, rows),
            (self.cols, self.col_values, cols),
        ):
            combo.value = _NONE if axis is None else axis[0]
            line.value = "" if axis is None else ";".join(_value_text(v) for v in axis[1])
        try:  # what it will run and cost, before Run is clicked
            settings, kind = self._preset_settings()
            rows, cols = self.axes()
            self.status.value = f"{self.preset.value}: {self._cost(rows, cols, settings, kind)}"
        except ValueError as exc:
            self.status.value = f"error: {exc}"

    def _preset_settings(self):
        """The widget's settings with the preset's own (its steps and start), and the preset's
        reconstruction kind (None: a plain sweep)."""
        custom = self.preset.value == "custom"
        extra = {} if custom else dict(PRESETS[self.preset.value][3])
        kind = extra.pop("reconstruct", None)
        return self._settings().replace(**extra), kind

    @staticmethod
    def _cost(rows, cols, settings, kind) -> str:
        if kind is None:
            return sweep_cost(rows, cols, settings)
        return sweep_cost(None, cols, settings.replace(**RECONSTRUCTION))

    def axes(self):
        """((rows name, values) or None, (cols name, values) or None) from the controls."""
        from .engine.explore_presets import parse_values

        axes = []
        for combo, line in ((self.rows, self.row_values), (self.cols, self.col_values)):
            axes.append(
                None
                if combo.value == _NONE
                else (combo.value, parse_values(combo.value, line.value))
            )
        if axes == [None, None]:
            raise ValueError("choose a setting to sweep (rows, columns or both)")
        return axes

    def run(self, _=None):
        """Start the sweep; returns the worker (None after an error, shown in the status)."""
        from ._explore import run_sweep_in_viewer

        if self.worker is not None:
            return self.worker
        try:
            rows, cols = self.axes()
            total = cells_of(rows, cols)
            if total > MAX_CELLS and not self.allow_many.value:
                raise ValueError(
                    f"{total} cells, each a whole run: tick 'allow more than "
                    f"{MAX_CELLS} cells' to run them, or give fewer values"
                )
            content, style = self._inputs()
            settings, kind = self._preset_settings()  # a preset's steps and start
            cost = self._cost(rows, cols, settings, kind)
            self.remove()
            self.worker = run_sweep_in_viewer(
                self._viewer,
                content,
                style,
                rows,
                cols,
                settings,
                start=False,
                max_cells=total if self.allow_many.value else MAX_CELLS,
                on_cell=self._on_cell,
                reconstruct=kind,
                title="" if self.preset.value == "custom" else PRESETS[self.preset.value][0],
            )
        except Exception as exc:  # bad names, values or inputs: say so, start nothing
            self.status.value = f"error: {exc}"
            return None
        self.job = self.worker.jobs[0]
        self.worker.finished.connect(self._on_finished)
        self.worker.errored.connect(lambda exc: setattr(self.status, "value", f"error: {exc}"))
        self.run_button.enabled, self.stop_button.enabled = False, True
        self.remove_button.enabled = True
        self.status.value = f"sweep: {cost}…"
        self._seconds = 0.0
        self.worker.start()
        return self.worker

    def _on_cell(self, _job, cell):
        self._seconds += cell.seconds
        left = (cell.total - cell.done) * self._seconds / cell.done
        self.status.value = (
            f"cell {cell.done}/{cell.total}: {cell.label} ({cell.seconds:.1f} s)"
            + (f" · about {left / 60:.1f} min left" if cell.done < cell.total else "")
        )

    def _on_finished(self):
        self.worker = None
        self.run_button.enabled, self.stop_button.enabled = True, False
        self.save_button.enabled = self.job is not None and bool(self.job.sweep.done.any())
        if self.job is not None and not self.status.value.startswith("error"):
            done = int(self.job.sweep.done.sum())
            self.status.value = f"sweep done: {done} of {self.job.sweep.done.size} cells"

    def stop(self, _=None):
        if self.worker is not None:
            self.worker.quit()

    def remove(self, _=None):
        """The last sweep's layers out of the viewer together, the view back as it was."""
        if self.job is not None and self.job.view is not None and self.worker is None:
            self.job.view.remove()
            self.remove_button.enabled = self.save_button.enabled = False

    def sheet(self):
        return None if self.job is None else self.job.sweep.contact_sheet()

    def save_sheet(self, path) -> None:
        from PIL import Image

        Image.fromarray(self.sheet()).save(path)
        self.status.value = f"saved {path}"

    def _ask_and_save(self, _=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self.native, "Save contact sheet", "sweep.png", "Images (*.png *.jpg)"
        )
        if path:
            self.save_sheet(path)
