"""The checks of setting values and the one rule for relative weights.

A leaf module (nothing of this package; numpy only where an array is checked, so that the CLI's
parser is built before any heavy import): ``settings`` checks every field with these,
and the engine normalises weights with the same rule, so neither imports the other for it.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys

# --- relative weights: one rule, for the layer weights and the style blend ----------------------


def normalized_weights(name: str, weights, count: int, item: str) -> list[float]:
    """``weights`` for ``count`` items (each an ``item``) divided by their sum; None: equal.

    The one rule for relative weights: finite numbers, none negative, a positive sum, one per
    item. Settings check all but the count where it is not known yet (the number of style images
    is known when a run starts).
    """
    if weights is None:
        return [1.0 / count] * count if count else []
    weights = check_weights(name, weights)
    check_count(name, weights, count, item)
    total = sum(weights)
    return [w / total for w in weights]


def normalized_blend_weights(weights, count: int) -> list[float]:
    """Blend weights (``style_blend``) for ``count`` style images, normalised to sum 1."""
    return normalized_weights("style_blend", weights, count, "style image")


def check_weights(name: str, value) -> tuple | None:
    """Relative weights: finite, not negative, with a positive sum when there are any."""
    weights = check_numbers(name, value)
    if weights is None:
        return None
    if any(w < 0 for w in weights):
        raise ValueError(
            f"{name} must not hold negative weights, got {weights}; the weights are "
            "relative (0 leaves an entry out)"
        )
    if weights and sum(weights) <= 0:
        raise ValueError(
            f"{name} must have a positive sum, got {weights}; give at least one weight above 0"
        )
    return weights


def check_count(name: str, weights, count: int, item: str) -> None:
    if len(weights) != count:
        raise ValueError(f"{name} needs one weight per {item} ({count}), got {len(weights)}")


def caller_stacklevel() -> int:
    """The stack level, for ``warnings.warn`` called by the caller of this function, of the first
    frame outside this package and ``dataclasses``: a warning then names the user's line (and
    Python's default filters show a DeprecationWarning there when it is ``__main__``)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
        "napari_nst",
        "dataclasses",
    ):
        frame, level = frame.f_back, level + 1
    return level


# --- validation: one check per kind of field ----------------------------------------------------


def got(value) -> str:
    text = repr(value)
    return f"got {text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


INTEGER_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")


def check_integer(name: str, value) -> int:
    """An int; an integral string ("10") is unambiguous, a float (2.5, 10.0) or a bool is not."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and INTEGER_TEXT.match(value):
        return int(value)
    raise ValueError(f"{name} must be an integer, {got(value)}")


def check_number(name: str, value) -> float:
    """A finite float from an int, a float or a numeric string; NaN and infinity are rejected
    (NaN passes every range check and would silently give an all-NaN image)."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ValueError(f"{name} must be a number, {got(value)}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    return number


def check_boolean(name: str, value) -> bool:
    if not isinstance(value, bool):  # "no" and 1 are not taken as True
        raise ValueError(f"{name} must be True or False, {got(value)}")
    return value


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be one of {', '.join(choices)}, {got(value)}")
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}")
    return value


def is_image(value) -> bool:
    return isinstance(value, list) or hasattr(value, "__array__") or hasattr(value, "shape")


def check_image(name: str, value):
    """An image array or None, kept as given: checked with the inputs (engine.images)."""
    if value is None or is_image(value):
        return value
    raise ValueError(f"{name} must be an image array such as the content's, or None, {got(value)}")


def check_device(name: str, value) -> str:
    """A device name; its syntax and availability are checked where torch is (engine.devices)."""
    torch = sys.modules.get("torch")  # a torch.device can only exist once torch is imported
    if torch is not None and isinstance(value, torch.device):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string (auto, cpu, cuda, cuda:N or mps), {got(value)}")
    return value


def check_layer_names(name: str, value, known: tuple) -> tuple:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(layer, str) for layer in value)
    ):
        raise ValueError(
            f"{name} must be a tuple of layer names such as ('conv1_1', 'conv2_1'), {got(value)}"
        )
    unknown = [layer for layer in value if layer not in known]
    if unknown:
        raise ValueError(
            f"{name}: unknown VGG-19 layer(s) {', '.join(map(repr, unknown))}; "
            f"valid names are {', '.join(known)}"
        )
    return tuple(value)


def check_numbers(name: str, value) -> tuple | None:
    if value is None:
        return None
    iterable = hasattr(value, "__iter__") and not isinstance(value, (str, bytes))
    items = list(value) if iterable else []
    if not iterable or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(f"{name} must be a sequence of numbers or None, {got(value)}")
    floats = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{name} must hold finite numbers, got {floats}")
    return floats


def check_window(name: str, value):
    """(low, high) with high > low, both finite; kept as given (arrays too)."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"{name} must be (low, high) with high > low, both finite, got {value!r}")
    return value


def check_folder(name: str, value) -> str | None:
    """A folder path as a string; empty means none (the default lookup). Whether it exists is
    checked when weights are looked up (engine.weights)."""
    if value is None or isinstance(value, (str, os.PathLike)):
        value = None if value is None else os.fspath(value)
        return value if value and value.strip() else None
    raise ValueError(f"{name} must be a folder path or None, {got(value)}")


def weights_file_check(kind: str, module: bool = False):
    """Check for a weights argument: a file path (not a folder), None, or -- with ``module`` -- a
    torch module, recognised by its ``state_dict`` without importing torch."""
    accepts = f"a {kind} file, a torch module or None" if module else f"a {kind} file or None"

    def check(name: str, value):
        if value is None or (module and hasattr(value, "state_dict")):
            return value
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{name} must be {accepts}, {got(value)}")
        if os.path.isdir(os.path.expanduser(value)):
            raise ValueError(
                f"{name}={os.fspath(value)!r} is a folder; pass {accepts} (to use the weights in "
                "a folder under their published file names, set weights_dir to it instead)"
            )
        return value

    return check


def check_label_array(labels, name: str = "regions"):
    """``labels`` as an integer array (bool is read as 0/1), or a ValueError saying what is
    expected. Reads no values: the values and the shape are checked where the content is known
    (``engine.regions``)."""
    import numpy as np

    array = labels if hasattr(labels, "dtype") and hasattr(labels, "shape") else np.asarray(labels)
    dtype = np.dtype(array.dtype)
    if dtype == np.bool_:
        return array
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(
            f"{name}: a {dtype} image is not a label image; pass integer labels "
            "(a napari Labels layer's data: 0 = background, 1, 2, ... one value "
            "per region), e.g. mask.astype(np.uint8)"
        )
    return array


def check_regions(name: str, value):
    """None, or an integer (or bool) label array."""
    return None if value is None else check_label_array(value, name)


def check_levels(name: str, value, known: tuple) -> tuple:
    """Universal style transfer's levels: integers 1..5 (a sequence, or text such as "5,4,3"
    from the CLI and the widget), each once; kept coarse to fine."""
    items = value.replace(" ", "").split(",") if isinstance(value, str) else value
    try:
        levels = [check_integer(name, item) for item in items]
    except (TypeError, ValueError):
        levels = None
    if not levels or any(level not in known for level in levels) or len(set(levels)) != len(levels):
        raise ValueError(
            f"{name} must be distinct levels from 1 to 5, such as (5, 4, 3, 2, 1) "
            f'or "3,2,1", {got(value)}'
        )
    return tuple(sorted(levels, reverse=True))
