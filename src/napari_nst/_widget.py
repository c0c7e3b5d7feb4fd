"""The "Style transfer" dock widget: a magicgui Container over ``run_in_viewer``.

The widget arranges and wires its parts: the content and style pickers, the regions section
(``_regions_panel``), the controls of the settings and the run options (``_controls``, made
from ``Settings``' field metadata), the values kept between sessions (``_saved_values``),
Run/Stop and the status line, Compare (``_compare``) and the explore section
(``_explore_panel``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, Container, Label, PushButton, Select

from ._controls import panel_controls, plain, run_options, setting_controls, show_settings
from ._explore_panel import ExplorePanel
from ._regions_panel import RegionsPanel
from ._saved_values import forget_values, load_values, save_values, show_not_defaults
from ._worker import run_in_viewer
from .settings import Settings, applies_to

if TYPE_CHECKING:
    import napari.viewer


def init_note(init: str) -> str:
    """Beside optimize's steps: where a run of ``init`` starts, and the other kind of start."""
    if init in ("content", "noise"):
        return (
            f"Starts from the {init}, as the paper does: give it 200+ steps (init predict, "
            "the default, starts near the goal: a few steps finish it)."
        )
    return (
        f"Starts from {init}'s result: a few steps finish it. The paper starts from the "
        "content or noise: set init (advanced settings) and give 200+ steps."
    )


def _is_grid_cell(layer) -> bool:
    """A layer of Compare's or a sweep's grid (made to be looked at, not an input)."""
    record = getattr(layer, "metadata", {}).get("napari_nst", {})
    return isinstance(record, dict) and bool({"sweep", "compare"} & set(record))


class StyleTransferWidget(Container):
    """Content and style pickers (several for a batch), parameters, Run/Stop, status, Compare."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self.worker = None
        #: Extra settings for console users, e.g. ``{"vgg_weights": module}``.
        self.settings_overrides: dict = {}
        self._compare_view = None  # the Compare grid while it is shown
        self._last_losses: dict | None = None  # shown in the status line between emissions
        self._gone = False  # the Qt widgets are deleted (the dock or the viewer was closed)
        self._failed = False  # the current or last run ended in an error
        self._make_pickers()
        self._make_run_options()
        self._make_controls()
        self._make_actions()
        self._arrange()
        self._load_values()
        self._show_restored()
        self._add_callbacks()
        self._update_visibility()
        self._select_defaults()

    def _make_pickers(self):
        """The content and style pickers, the warning when one layer is both, the regions."""
        self.content = Select(
            label="content",
            choices=self._image_layers,
            allow_multiple=True,
            tooltip="content image layer(s); several run one after another",
        )
        self.style = Select(
            label="style",
            choices=self._image_layers,
            allow_multiple=True,
            tooltip="style image layer(s); every content is run with every style",
        )
        for picker in (self.content, self.style):
            picker.native.setMaximumHeight(90)
        self.same_layer = Label(value="")
        self.same_layer.visible = False
        self.regions = RegionsPanel(self._viewer, self._image_layers, self._default_region_style)

    def _make_run_options(self):
        """Slice or whole stack, a stack's scheduler and planes, what becomes of iterates."""
        self.scope, self.scheduler, self.planes, self.iterates = run_options()

    def _make_controls(self):
        """A control per setting (the Settings metadata), their defaults here, the rest."""
        #: what "reset to defaults" restores: the API's defaults, adapted to this machine
        self.controls, self.defaults = setting_controls(self._device_choices())
        self.show_advanced = CheckBox(value=False, text="advanced settings")
        self.init_note = Label(value=init_note(self.controls["init"].value))  # beside the steps
        self.restored = Label(value="")
        self.reset_button = PushButton(
            text="reset to defaults", tooltip="set every value back to its default"
        )

    def _make_actions(self):
        """Run and Stop, Compare, the explore section and the status line."""
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.compare = CheckBox(
            value=False,
            text="compare every run side by side (grid)",
            tooltip="every finished run in napari's grid: a row per content, the "
            "content first, then each style followed by its runs; "
            "labels on the canvas. Off: the view as before",
        )
        self.show_explore = CheckBox(value=False, text="explore: sweep settings side by side")
        self.explore = ExplorePanel(self._viewer, self._sweep_inputs, self.current_settings)
        self.status = Label(value="idle")

    def _arrange(self):
        """The widgets in order, optimize's note just after its steps (magicgui has _layout)."""
        # a long message (a download error names a URL and a directory) must not widen the dock:
        # the labels wrap, take no width of their own, and keep the whole text in a tooltip
        from qtpy.QtWidgets import QSizePolicy

        for label in (self.status, self.restored, self.same_layer, self.init_note):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        basic, advanced = panel_controls(self.controls)
        at = next((i + 1 for i, c in enumerate(basic) if c is self.controls.get("steps")), 0)
        self.extend(
            [
                self.content,
                self.style,
                self.same_layer,
                self.regions,
                self.scope,
                self.iterates,
                *basic[:at],
                self.init_note,
                *basic[at:],
                self.show_advanced,
                *advanced,
                self.planes,
                self.scheduler,
                self.restored,
                self.reset_button,
                Container(
                    widgets=[self.run_button, self.stop_button], layout="horizontal", labels=False
                ),
                self.compare,
                self.status,
                self.show_explore,
                self.explore,
            ]
        )

    def _add_callbacks(self):
        for control in self.controls.values():
            control.changed.connect(self._show_restored)
        for widget, slot in (
            (self.reset_button, self.reset_values),
            (self.run_button, self.run),
            (self.stop_button, self.stop),
            (self.compare, self._on_compare),
            (self.content, self._warn_same_layer),
            (self.style, self._warn_same_layer),
        ):
            widget.changed.connect(slot)
        for toggle in (self.show_advanced, self.show_explore, self.scope, self.controls["method"]):
            toggle.changed.connect(self._update_visibility)
        self.controls["init"].changed.connect(
            lambda init: setattr(self.init_note, "value", init_note(init))
        )
        for event in ("inserted", "removed", "reordered"):
            getattr(self._viewer.layers.events, event).connect(self._on_layers_changed)
        for layer in self._viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.native.destroyed.connect(self._on_destroyed)

    def _on_destroyed(self, _=None):
        """The Qt widgets are gone (the dock closed, or the viewer with it): stop the run, and let
        no later callback (worker signals, layer events) touch them: PyQt aborts the process on
        an exception in a slot unless napari's exception hook is installed."""
        self._gone = True
        if self.worker is not None:
            self.worker.quit()

    # --- layer pickers ------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        from napari.layers import Image

        # inputs first, then results; a grid's cells (a sweep's, Compare's) are for looking at
        # side by side, not inputs: they would crowd the list
        images = [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not _is_grid_cell(layer)
        ]
        inputs = [layer for layer in images if "napari_nst" not in layer.metadata]
        return [
            (layer.name, layer)
            for layer in inputs + [layer for layer in images if layer not in inputs]
        ]

    def _on_layers_changed(self, event=None):
        if self._gone:
            return
        layer = getattr(event, "value", None)
        if _is_grid_cell(layer) and getattr(event, "type", "") in ("inserted", "removed"):
            return  # Compare's and sweeps' cells are never choices: nothing to refresh
        if event is not None and getattr(event, "type", "") == "inserted":
            layer.events.name.connect(self._on_layers_changed)
        self.content.reset_choices()
        self.style.reset_choices()
        self._select_defaults()
        self.regions.reset_choices()

    def _select_defaults(self):
        """Pick a content and a different style when nothing is chosen yet, from input layers
        only: a result of any run (its metadata says so) is never a default choice."""
        inputs = [layer for _, layer in self._image_layers() if "napari_nst" not in layer.metadata]
        if not self.content.value and inputs:
            self.content.value = [inputs[0]]
        if not self.style.value and len(inputs) > 1:
            self.style.value = [inputs[1]]

    def _warn_same_layer(self, _=None):
        """A style that is the content itself gives back about the content: say so at once."""
        same = [layer.name for layer in self.content.value if layer in self.style.value]
        self.same_layer.value = (
            f"⚠ {', '.join(same)} is both content and style: the result "
            "will look much like the content; choose a painting as the "
            "style"
            if same
            else ""
        )
        self.same_layer.visible = bool(same)

    def _sweep_inputs(self):
        """The content and style layers a sweep runs with: the first of each chosen."""
        if not self.content.value or not self.style.value:
            raise ValueError("choose a content and a style image layer first")
        return self.content.value[0], self.style.value[0]

    def _default_region_style(self, label: int):
        """A new label's style: the chosen style layers in turn (label 1 the first, label 2 the
        second, ...), so that painting two labels gives two styles."""
        chosen = list(self.style.value) or [layer for _, layer in self._image_layers()][1:2]
        return chosen[(label - 1) % len(chosen)] if chosen else None

    @staticmethod
    def _device_choices():
        from .engine.devices import available_devices  # imports torch: only when the widget opens

        return ["auto", *available_devices()]

    # --- settings -----------------------------------------------------------------------------
    def _update_visibility(self, _=None):
        """Show the basic panel, the advanced one when asked, and of those the settings that the
        chosen method reads."""
        method = self.controls["method"].value
        show_settings(self.controls, method, self.show_advanced.value)
        self.explore.visible = self.show_explore.value
        whole_stack_advanced = self.show_advanced.value and self.scope.value == "stack"
        self.scheduler.visible = self.planes.visible = whole_stack_advanced
        self.iterates.visible = self.scope.value == "slice" and applies_to("steps", method)
        self.init_note.visible = applies_to("init", method)  # optimize: where its steps start

    def _values(self) -> dict:
        """The controls' values as plain data (a chosen folder as a string)."""
        return plain({name: control.value for name, control in self.controls.items()})

    def current_settings(self) -> Settings:
        return Settings(**self._values(), **self.settings_overrides)

    def baseline(self) -> Settings:
        """The widget's defaults as settings: result names list what differs from them."""
        return Settings(**plain(self.defaults), **self.settings_overrides)

    def _load_values(self):
        """Restore the last session's values (``_show_restored`` names them)."""
        load_values(self.controls)

    def _show_restored(self, _=None):
        """Name the values that differ from the defaults: they are kept between sessions, so a
        new session may start with the last one's values."""
        show_not_defaults(self.restored, self._values(), self.defaults)

    def reset_values(self, _=None):
        """Every control back to its default; the saved values are forgotten too."""
        for name, value in self.defaults.items():
            self.controls[name].value = value
        forget_values()
        self._show_restored()

    def _save_values(self):
        save_values(self._values())

    # --- running ------------------------------------------------------------------------------
    def run(self, _=None):
        """Start a run with the chosen layers and settings; returns the worker (or None on error)."""
        from napari.utils.notifications import show_error

        if self.worker is not None:
            return self.worker
        try:
            regions = self.regions.layer
            style = self.regions.mapping() if regions is not None else list(self.style.value)
            if not self.content.value or not style:
                raise ValueError(
                    "choose a content and a style image layer first"
                    if regions is None
                    else "give at least one label a style layer (the "
                    "regions table), or choose regions: none"
                )
            settings = self.current_settings()
            self._save_values()
            self._started = time.perf_counter()
            worker = run_in_viewer(
                self._viewer,
                list(self.content.value),
                style,
                settings,
                scope=self.scope.value,
                start=False,
                iterates=self.iterates.value,
                baseline=self.baseline(),
                regions=regions,
                client=self.scheduler.value.strip() or None,
                temporal_weight=0 if self.planes.value == "own" else None,
                on_iterate=self._on_iterate,
            )
        except Exception as exc:  # bad input or setting: say so and stay idle
            show_error(f"Style transfer: {exc}")
            self._set_status(f"error: {exc}")
            return None
        self.worker = worker
        self._failed = False
        worker.finished.connect(self._on_finished)
        worker.errored.connect(self._on_error)
        self.run_button.enabled, self.stop_button.enabled = False, True
        self._set_status(f"starting ({len(worker.jobs)} run(s))…")
        worker.start()
        return worker

    def _on_error(self, exc):
        self._failed = True
        if self._gone:
            return
        text = f"error: {exc}"
        if "WeightsError" in text:  # the first thing a user without network access meets
            text = (
                "error: weights file not found or not downloaded. Choose the folder that "
                "holds it as 'weights folder' (advanced settings), or set "
                f"$NAPARI_NST_WEIGHTS_DIR. {exc}"
            )
        self._set_status(text)

    def stop(self, _=None):
        """End the run at the next step; the layers already added stay."""
        if self.worker is not None:
            self._set_status("stopping…")
            self.worker.quit()

    _STATUS_CHARS = 300

    def _set_status(self, text: str) -> None:
        """The status line: at most a few lines of text; the whole message in the tooltip."""
        short = text if len(text) <= self._STATUS_CHARS else text[: self._STATUS_CHARS - 1] + "…"
        self.status.value = short
        self.status.tooltip = text

    def _on_iterate(self, job, iterate):
        if self._gone:
            return
        if not hasattr(iterate, "total_steps"):  # a finished plane of a whole stack
            self._on_plane(job, iterate)
            return
        rate = iterate.step / max(iterate.elapsed, 1e-9)
        text = f"{job.label}: step {iterate.step}/{iterate.total_steps} · {rate:.2f} steps/s"
        left = iterate.seconds_left  # counts a coarse scale's steps as the cheaper steps they are
        if iterate.step < iterate.total_steps and left is not None:
            text += f" · {left:.0f} s left"
        self._last_losses = iterate.losses or self._last_losses
        if self._last_losses and "total" in self._last_losses:
            text += f" · loss {self._last_losses['total']:.4g}"
        self._set_status(text)

    def _on_plane(self, job, plane):
        rate = plane.done / max(plane.elapsed, 1e-9)
        text = f"{job.label}: plane {plane.done}/{plane.total} · {rate:.2f} planes/s"
        if plane.done < plane.total:
            text += f" · {(plane.total - plane.done) / rate:.0f} s left"
        self._set_status(text)

    def _on_finished(self):
        worker, self.worker = self.worker, None
        stopped = worker is not None and worker.abort_requested
        if self._gone:
            return
        self.run_button.enabled, self.stop_button.enabled = True, False
        if not self._failed:
            self._set_status(
                "stopped" if stopped else f"done in {time.perf_counter() - self._started:.1f} s"
            )
        if self.compare.value:
            self._show_comparison()

    # --- comparison grid ----------------------------------------------------------------------
    def _on_compare(self, on: bool):
        if on:
            self._show_comparison()
        else:
            self._restore_view()

    def _show_comparison(self):
        """Every finished run in the viewer side by side (a new run is added when it ends)."""
        from ._compare import show_comparison

        self._restore_view()
        self._compare_view = show_comparison(self._viewer)

    def _restore_view(self):
        if self._compare_view is not None:
            view, self._compare_view = self._compare_view, None
            view.remove()
