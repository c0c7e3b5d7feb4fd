"""What the package derives from the settings registry (``Settings``' field metadata), so that
no other module keeps a list of setting names: the keys by which runs share prepared inputs and
style targets, the settings a sweep can vary, and the words of a result's name.

No torch, no napari: the CLI and the widget read these before any heavy import.
"""

from __future__ import annotations

import dataclasses

from .engine.methods import STARTS
from .setting_fields import NAMED, STAGES
from .settings import Settings

#: The settings a sweep can vary, in field order (the others every cell shares).
SWEEPABLE = tuple(f.name for f in dataclasses.fields(Settings) if f.metadata["sweep"])


def stage_key(settings: Settings, stage: str) -> tuple:
    """What a run of ``settings.method`` computes at ``stage`` depends on (one of ``STAGES``):
    the method and the values of the settings it reads -- or the method of its start image
    (``init``) reads -- whose ``stage`` is that one or an earlier one. Runs whose keys agree
    share what that stage made (a sweep's cells share prepared inputs by ``inputs_key``, style
    targets by ``target_key``)."""
    stages = STAGES[: STAGES.index(stage) + 1]
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    readers = {settings.method}
    if settings.method in fields["init"].metadata["methods"] and settings.init in STARTS:
        readers.add(settings.init)  # the start image's method reads its own settings
    return (
        settings.method,
        *(
            (f.name, _key_value(getattr(settings, f.name)))
            for f in fields.values()
            if f.metadata["stage"] in stages and readers & set(f.metadata["methods"])
        ),
    )


def inputs_key(settings: Settings) -> tuple:
    """What ``run.prepare_inputs`` makes of the same content and styles depends on."""
    return stage_key(settings, "inputs")


def target_key(settings: Settings) -> tuple:
    """What the method's style target (``Method.target``) for the same styles depends on."""
    return stage_key(settings, "target")


def _key_value(value):
    """A value as a key: plain data as it is, anything else (an array, a module) by identity."""
    plain = (type(None), str, int, float, bool)
    if isinstance(value, plain) or (
        isinstance(value, tuple) and all(isinstance(v, plain) for v in value)
    ):
        return value
    return (type(value).__name__, id(value))


def name_words(settings: Settings, baseline: Settings) -> list[str]:
    """The settings of ``settings`` that a run of its method reads, that are named (``words``
    not None, ``named_with`` holding) and that differ from ``baseline``, as words for a
    result's name: "strength 0.3", "steps 50", "keep colors"."""
    words = []
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        if (
            meta["words"] is None
            or settings.method not in meta["methods"]
            or any(getattr(settings, other) != value for other, value in meta["named_with"].items())
        ):
            continue
        value, base = getattr(settings, f.name), getattr(baseline, f.name)
        if value is base or (
            not hasattr(value, "shape") and not hasattr(base, "shape") and value == base
        ):
            continue
        word = f.name.replace("_", " ") if meta["words"] is NAMED else meta["words"]
        if isinstance(value, bool):
            words.append(word if value else f"no {word}")
        elif hasattr(value, "shape") or value is None:
            words.append(word if value is not None else f"no {word}")
        elif isinstance(value, (tuple, list)):
            words.append(f"{word} {','.join(map(str, value)) or 'none'}")
        else:
            words.append(f"{word} {value:g}" if isinstance(value, float) else f"{word} {value}")
    return words
