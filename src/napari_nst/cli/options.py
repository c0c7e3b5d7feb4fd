"""The options generated from ``napari_nst.settings.Settings`` and its field metadata (choices,
which methods read an option), so the CLI offers exactly what the API and the widget do; and
back from the parsed arguments to Settings fields."""

from __future__ import annotations

import argparse
import dataclasses

from ..settings import Settings, field_annotation, field_choices, field_default, methods_note

#: Defaults of the CLI that differ from the API's (see ``stylize.output_plan``).
_CLI_DEFAULTS = {
    "output_range": "content when the output file can hold the content's dtype "
    "(8-bit content, or 16-bit content in a .tif), else unit"
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        if meta["cli"] is None:  # not a CLI option (emit_every: --save-every below)
            continue
        flag = "--" + f.name.replace("_", "-")
        default = field_default(f)
        if isinstance(default, tuple):  # a sequence given as text: "5,4,3,2,1"
            default = ",".join(map(str, default))
        only = f"{methods_note(f)}; " if methods_note(f) else ""
        kwargs = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f"{meta['help']} ({only}default: {_CLI_DEFAULTS.get(f.name, default)})",
        }
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if isinstance(default, (int, float)):
            kwargs["type"] = type(default)
        elif _is_sequence(f):  # "conv1_1,conv2_1" or "0.5,0.5"; Settings checks the items
            kwargs["type"] = _comma_list(numbers=default is None)
        if field_choices(f):
            kwargs["choices"] = field_choices(f)
        parser.add_argument(flag, **{**kwargs, **meta["cli"]})
    parser.add_argument(
        "--save-every",
        "--emit-every",
        dest="emit_every",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="also write the image every N steps as OUT_stepNNNN.EXT, with a "
        "loss line (default: no intermediate files, a loss line about every "
        "steps/10 steps)",
    )


def _is_sequence(f: dataclasses.Field) -> bool:
    """Whether the setting is a sequence (``tuple`` or ``tuple | None``), given as text."""
    return "tuple" in str(field_annotation(f))


def _comma_list(numbers: bool):
    """An argparse type: comma-separated items as a tuple of strings (layer names, levels) or,
    with ``numbers``, of floats (weights, windows); "" is the empty tuple."""

    def parse(text: str) -> tuple:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        if not numbers:
            return items
        try:
            return tuple(float(item) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give numbers separated by commas, e.g. 0.5,0.5"
            ) from None

    return parse


def settings_options(args: argparse.Namespace) -> dict:
    """The Settings fields given on the command line (options not given are absent)."""
    names = {f.name for f in dataclasses.fields(Settings)}
    return {k: v for k, v in vars(args).items() if k in names}
