"""The dock widget's controls: one per setting, made from ``Settings``' field metadata, and the
run options that are not settings (slice or whole stack, a stack's scheduler and planes, what
becomes of iterates).

A setting's metadata says which panel shows it (basic or advanced), which methods read it (the
others hide it), its choices (a ``Literal``), limits, help (the tooltip) and any further
magicgui options, so the widget, the CLI and the API share one definition.

The widget's defaults are the API's, except one: on a machine without a GPU the feature network
is the distilled VGG-19 (a 3.9 MB download, about 30 s for the default run at 512 px on two CPU
cores) instead of ImageNet VGG-19 (548 MB, minutes per run), so a new user's first Run is useful
within a minute.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from magicgui.widgets import ComboBox, LineEdit, create_widget

from .setting_fields import PANELS
from .settings import Settings, applies_to, field_annotation, field_default

#: The settings each panel shows, in ``Settings``' field order.
PANEL_FIELDS = {
    panel: [f for f in dataclasses.fields(Settings) if f.metadata["panel"] == panel]
    for panel in PANELS
}


def setting_control(field: dataclasses.Field, **options):
    """The control of one setting: magicgui picks it from the type (a ``Literal`` gives a combo
    box), with the help as its tooltip, the limits and the metadata's magicgui options, and
    ``options`` known only now (the devices present)."""
    meta = field.metadata
    limits = {"min": meta["min"], "max": meta["max"]} if meta["min"] is not None else {}
    value, annotation = field_default(field), field_annotation(field)
    if isinstance(value, tuple):  # a sequence edited as text, "5,4,3,2,1" (Settings reads it)
        value, annotation = ",".join(map(str, value)), str
    return create_widget(
        value=value,
        annotation=annotation,
        name=field.name,
        options={"tooltip": meta["help"], **limits, **meta["widget"], **options},
    )


def setting_controls(devices: list[str]) -> tuple[dict, dict]:
    """({setting: its control}, in the panels' order, with ``devices`` as the device's choices;
    {setting: default}, what "reset to defaults" restores: the API's defaults, adapted to this
    machine)."""
    known_now = {"device": {"choices": devices}}
    controls = {
        f.name: setting_control(f, **known_now.get(f.name, {}))
        for panel in PANELS
        for f in PANEL_FIELDS[panel]
    }
    defaults = {name: control.value for name, control in controls.items()}
    if all(device == "cpu" for device in devices if device != "auto"):
        defaults["network"] = "vgg19-distilled"
        controls["network"].value = "vgg19-distilled"
    return controls, defaults


def panel_controls(controls: dict) -> list[list]:
    """Each panel's controls, in ``PANELS``' order."""
    return [[controls[f.name] for f in PANEL_FIELDS[panel]] for panel in PANELS]


def show_settings(controls: dict, method: str, advanced: bool) -> None:
    """Show the basic panel, the advanced one when asked, and of those the settings that
    ``method`` reads."""
    shown_panels = PANELS if advanced else PANELS[:1]
    for panel in PANELS:
        for f in PANEL_FIELDS[panel]:
            controls[f.name].visible = panel in shown_panels and applies_to(f.name, method)


def plain(values: dict) -> dict:
    """``values`` as plain data, as Settings and JSON take them (a chosen folder as a string)."""
    return {
        name: str(value) if isinstance(value, Path) else value for name, value in values.items()
    }


def run_options() -> tuple[ComboBox, LineEdit, ComboBox, ComboBox]:
    """(scope, scheduler, planes, iterates): slice or whole stack, a stack's dask scheduler and
    how its planes relate, and what becomes of a run's iterates."""
    scope = ComboBox(
        label="run on",
        value="slice",
        choices=[("slice on screen", "slice"), ("whole stack", "stack")],
        tooltip="slice on screen: the 2-D image shown, every emitted step a new layer. "
        "whole stack: every plane of the content layer (z, t, ...), consistent from "
        "plane to plane, into ONE layer filled in as planes finish; results go to a "
        "temporary zarr store (see the layer's metadata)",
    )
    scheduler = LineEdit(
        label="dask scheduler",
        value="",
        tooltip="whole stack: the address of a dask.distributed scheduler (tcp://host:8786) "
        "to run the planes on a cluster; empty: on this machine",
    )
    planes = ComboBox(
        label="planes",
        value="follow",
        choices=[("follow each other (z, t)", "follow"), ("each on its own", "own")],
        tooltip="whole stack: follow each other -- each plane keeps to the previous plane's "
        "result, moved by the optical flow, so textures do not flicker through z or "
        "t; each on its own -- for tiles or plate positions (and in parallel on a "
        "cluster)",
    )
    iterates = ComboBox(
        label="iterates",
        value="fold",
        choices=[
            ("fold into one layer (step slider)", "fold"),
            ("keep each as a layer", "keep"),
        ],
        tooltip="while a run goes, each emitted step is a new layer; when it ends: fold them "
        "into one layer with a 'step' slider (the list stays tidy), or keep them",
    )
    return scope, scheduler, planes, iterates
