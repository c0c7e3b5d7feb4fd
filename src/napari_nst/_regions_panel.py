"""The widget's regions section: a Labels-layer picker and one row per label present, each
assigning a style layer or "keep" (the content stays as it is there).

The rows follow the labels: painting a new label adds its row, erasing the last pixel of one
removes it, and choices already made are kept. A new label's default style is picked by the
widget (``default_style``), so two painted labels on the sample give two styles in one Run.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label

KEEP = "keep (content)"
#: Label values shown at most (a segmentation with thousands of labels gets one style for all
#: through the "others" row).
MAX_ROWS = 12


def labels_present(data) -> list[int]:
    """The label values in a Labels layer's data (its full-resolution level)."""
    if isinstance(data, (list, tuple)):  # multiscale
        data = data[-1]
    return [int(v) for v in np.unique(np.asarray(data))]


class RegionsPanel(Container):
    """``layer``: the chosen Labels layer (None: no regions); ``mapping()``: {label: Image
    layer} of the labels given a style; ``refresh()`` rebuilds the rows from the labels."""

    def __init__(self, viewer, image_layers, default_style):
        super().__init__(labels=True)
        self._viewer = viewer
        self._image_layers = image_layers
        self._default_style = default_style
        self._watched = None
        self._choices: dict[int, object] = {}
        self.picker = ComboBox(
            label="regions",
            choices=self._labels_choices,
            tooltip="a Labels layer: a style per painted label (paint with "
            "the Labels tools; 0 is the background). none: one style "
            "everywhere",
        )
        self.rows = Container(labels=True)
        self.note = Label(value="")
        self.extend([self.picker, self.rows, self.note])
        self.margins = self.rows.margins = (0, 0, 0, 0)
        self.picker.changed.connect(self._on_picked)
        self._on_picked()

    def _labels_choices(self, _widget=None):
        from napari.layers import Labels

        return [("none", None)] + [
            (layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)
        ]

    @property
    def layer(self):
        return self.picker.value

    def reset_choices(self, *_):
        self.picker.reset_choices()
        self.refresh()

    def _on_picked(self, _=None):
        if self._watched is not None:
            for event in ("paint", "data", "set_data"):
                getattr(self._watched.events, event).disconnect(self.refresh)
        self._watched = self.layer
        if self._watched is not None:
            for event in ("paint", "data", "set_data"):
                getattr(self._watched.events, event).connect(self.refresh)
        self.refresh()

    def refresh(self, _=None):
        """One row per label present (label 0: the background), keeping the choices made."""
        for row in list(self.rows):
            self._choices[int(row.name.split("_")[1])] = row.value
        self.rows.clear()
        layer = self.layer
        self.rows.visible = self.note.visible = layer is not None
        if layer is None:
            return
        present = labels_present(layer.data)
        shown = present[:MAX_ROWS]
        styles = [("keep (content)", KEEP)] + [
            (name, image) for name, image in self._image_layers()
        ]
        for label in shown:
            value = self._choices.get(label)
            if value is None or (
                not isinstance(value, str) and all(value is not s for _, s in styles)
            ):
                value = KEEP if label == 0 else self._default_style(label)
            row = ComboBox(
                name=f"label_{label}",
                label=f"label {label}",
                choices=styles,
                value=value if value is not None else KEEP,
                tooltip=f"the style of label {label}"
                + (" (the background)" if label == 0 else "")
                + ", or keep: the content stays there",
            )
            self.rows.append(row)
        hidden = len(present) - len(shown)
        self.note.value = (
            f"{hidden} more label(s) keep the content"
            if hidden
            else "paint labels on the Labels layer; each gets a row here"
            if present == [0]
            else ""
        )

    def mapping(self) -> dict:
        """{label: Image layer} of the rows given a style."""
        return {
            int(row.name.split("_")[1]): row.value
            for row in self.rows
            if not isinstance(row.value, str)
        }
