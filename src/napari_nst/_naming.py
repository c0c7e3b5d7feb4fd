"""The names of result layers: what a run is ("tubingen × starry_night · predict · strength
0.3"), from the settings that differ from a baseline (their words come from the settings
registry: ``settings.name_words``), unique in the layer list."""

from __future__ import annotations

from .registry import name_words
from .settings import Settings


def run_name(job, settings: Settings, baseline: Settings | None = None) -> str:
    """What a result is: "tubingen × starry_night · predict · strength 0.3" (pair, method, what
    differs from ``baseline``, by default the API's defaults)."""
    words = name_words(settings, baseline if baseline is not None else Settings())
    return " · ".join([job.label, settings.method, *words])


def unique_name(viewer, name: str) -> str:
    """``name``, or "name (2)", "name (3)", ... where a layer of the viewer has it already (or a
    run's iterate: "name · step 5")."""
    taken = {layer.name for layer in viewer.layers}
    candidate, number = name, 1
    while candidate in taken or any(t.startswith(candidate + " · step ") for t in taken):
        number += 1
        candidate = f"{name} ({number})"
    return candidate
