"""The dock widget's values kept between sessions, in ``$XDG_CONFIG_HOME/napari-nst/widget.json``:
saved at each Run, restored when the widget opens, forgotten by "reset to defaults". A new
session may so start with the last one's values: the widget names those that differ from the
defaults (``show_not_defaults``) rather than apply them silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def settings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "napari-nst" / "widget.json"


def load_values(controls: dict) -> None:
    """The last session's values into ``controls`` ({setting: control}), those that still fit."""
    try:
        saved = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return
    for name, value in saved.items():
        control = controls.get(name)
        if control is None:
            continue
        try:
            control.value = value
        except (ValueError, TypeError):
            pass  # a value from another version that no longer fits


def save_values(values: dict) -> None:
    """``values`` (plain data) for the next session; a config folder that cannot be written
    keeps none."""
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=1))
    except OSError:
        pass


def forget_values() -> None:
    settings_path().unlink(missing_ok=True)


def show_not_defaults(label, values: dict, defaults: dict) -> None:
    """``label`` names the ``values`` that differ from the ``defaults`` (hidden when none do)."""
    changed = [
        f"{name.replace('_', ' ')} {values[name]}"
        for name in values
        if values[name] != defaults[name]
    ]
    label.value = (
        "not the defaults (kept between sessions): " + ", ".join(changed) if changed else ""
    )
    label.tooltip = f"saved in {settings_path()}" if changed else ""
    label.visible = bool(changed)
