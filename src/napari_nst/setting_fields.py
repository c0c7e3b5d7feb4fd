"""How a setting is declared: one dataclass field whose metadata says everything the package
needs to know of it (``setting``), and the vocabularies of that metadata."""

from __future__ import annotations

from dataclasses import field

from .engine.methods import NAMES  # the registry's names (no torch import)

#: The widget's panels, in order; a field with ``panel=None`` is not in the widget.
PANELS = ("basic", "advanced")
#: What a setting changes, each stage implying the next: the prepared inputs (then the style
#: target and the run too), the style target (then the run), or only the run.
STAGES = ("inputs", "target", "run")
NAMED = object()  # ``words``' default: the field's name, "_" read as " "


def setting(
    default,
    help: str,
    *,
    methods: tuple = NAMES,
    stage: str = "run",
    sweep: bool = True,
    words=NAMED,
    named_with: dict | None = None,
    check=None,
    panel: str | None = None,
    min=None,
    max=None,
    widget: dict | None = None,
    cli: bool | dict = True,
):
    """A dataclass field and everything the package needs to know of it.

    ``methods``: the methods whose runs read the setting (the widget hides it under the others;
    the CLI and ``help(Settings)`` say "optimize only"; a result's name and a sweep's sharing
    consider it only there). ``stage``: what a new value changes, one of ``STAGES``: "inputs"
    (``run.prepare_inputs`` reads it), "target" (the method's style target does), "run" (only
    the run). ``sweep``: whether a sweep may vary it (False: every cell must share it).
    ``words``: its words in a result's name ("strength 0.3"; None: never named, it does not
    change the look or the name says it already); ``named_with``: {setting: value} that must
    hold for it to be named (min_size only with coarse_to_fine). ``check``: ``check(name,
    value)`` returns the value checked and coerced (default: by its choices, else by its
    default's type and ``min``/``max``). ``panel``: "basic" or "advanced", the widget's panel
    that shows it; None: not in the widget. ``min``, ``max``: the allowed range, also the
    widget control's limits. ``widget``: magicgui options the type does not decide
    (``widget_type``, ``step``, ``label``, ``mode``). ``cli``: False: no CLI option; a dict:
    argparse options the type does not decide (``metavar``).
    """
    if panel not in (None, *PANELS) or not set(methods) <= set(NAMES) or stage not in STAGES:
        raise ValueError(f"panel {panel!r}, methods {methods!r} or stage {stage!r} unknown")
    meta = {
        "help": help,
        "methods": tuple(methods),
        "stage": stage,
        "sweep": sweep,
        "words": words,
        "named_with": dict(named_with or {}),
        "check": check,
        "panel": panel,
        "min": min,
        "max": max,
        "widget": dict(widget or {}),
        "cli": {} if cli is True else (cli or None),
    }
    if isinstance(default, (list, dict, tuple)) or callable(default):
        factory = default if callable(default) else (lambda d=default: d)
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)
