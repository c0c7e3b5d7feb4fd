"""The names of result layers: what a run is ("tubingen × starry_night · predict · strength
0.3"), from the settings that differ from a baseline, unique in the layer list."""

from __future__ import annotations

import dataclasses

from .settings import Settings

#: Settings left out of result names: they do not change what a result looks like (or the
#: name says it already, or they are the inputs' own, set per layer).
_NOT_NAMED = {"method", "device", "emit_every", "weights_dir", "output_range", "content_window",
              "style_window", "regions", "vgg_weights", "predictor_weights",
              "transformer_weights"}
#: Shorter words for some settings in result names; the others by their name.
_NAME_WORDS = {"style_strength": "strength", "init_image": "start image",
               "min_working_size": "working floor", "style_layer_weights": "layer weights"}


#: Settings that matter only with another one: named only then.
_ONLY_WITH = {"min_size": lambda s: s.coarse_to_fine,
              "learning_rate": lambda s: s.optimizer == "adam"}


def differing_settings(settings: Settings, baseline: Settings) -> list[str]:
    """The settings of ``settings`` that a run of its method reads and that differ from
    ``baseline``, as words for a name: "strength 0.3", "steps 50", "keep colors"."""
    from .settings import applies_to

    words = []
    for f in dataclasses.fields(Settings):
        if f.name in _NOT_NAMED or not applies_to(f.name, settings.method) \
                or not _ONLY_WITH.get(f.name, bool)(settings):
            continue
        value, base = getattr(settings, f.name), getattr(baseline, f.name)
        if value is base or (not hasattr(value, "shape") and not hasattr(base, "shape")
                             and value == base):
            continue
        word = _NAME_WORDS.get(f.name, f.name.replace("_", " "))
        if isinstance(value, bool):
            words.append(word if value else f"no {word}")
        elif hasattr(value, "shape") or value is None:
            words.append(word if value is not None else f"no {word}")
        elif isinstance(value, (tuple, list)):
            words.append(f"{word} {','.join(map(str, value)) or 'none'}")
        else:
            words.append(f"{word} {value:g}" if isinstance(value, float) else f"{word} {value}")
    return words


def run_name(job, settings: Settings, baseline: Settings | None = None) -> str:
    """What a result is: "tubingen × starry_night · predict · strength 0.3" (pair, method, what
    differs from ``baseline``, by default the API's defaults)."""
    words = differing_settings(settings, baseline if baseline is not None else Settings())
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

