"""``napari-nst sweep``: a sweep of one or two settings, written as a labelled contact sheet.

    napari-nst sweep content.jpg style.jpg --rows style_layers=growing \\
        --cols "content_weight=0.01;0.1;1;10" -o sheet.png
    napari-nst sweep content.jpg --preset fig1-content -o reconstructions.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail
from .options import add_settings_arguments, settings_options


def _axis(text: str) -> tuple[str, str]:
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME=V1;V2;..., e.g. content_weight=0.1;1;10"
        )
    return name.strip(), values


def add_sweep_parser(commands) -> None:
    from ..engine.explore import MAX_CELLS
    from ..engine.explore_presets import PRESETS

    parser = commands.add_parser(
        "sweep",
        help="run a sweep of settings and write a labelled contact sheet",
        description="Run CONTENT with STYLE once per value of one setting (--rows) or two "
        "(--rows and --cols) and write the cells as one labelled image. Values are "
        "separated by ';', a layer set's layers by ',' (style_layers=conv1_1;"
        "conv1_1,conv2_1), and style_layers=growing is the paper's five growing "
        "sets. Ctrl-C writes the cells done.",
    )
    parser.add_argument("content", type=Path, help="content image file")
    parser.add_argument(
        "style",
        type=Path,
        nargs="?",
        default=None,
        help="style image file (not needed for the fig1-content preset; the "
        "fig1-style preset reconstructs it)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="the contact sheet (.png or .jpg)"
    )
    parser.add_argument("--rows", type=_axis, default=None, metavar="NAME=V1;V2;...")
    parser.add_argument("--cols", type=_axis, default=None, metavar="NAME=V1;V2;...")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="; ".join(f"{key}: {value[0]}" for key, value in PRESETS.items()),
    )
    parser.add_argument(
        "--max-cells",
        type=int,
        default=MAX_CELLS,
        help=f"refuse a sweep of more cells (default {MAX_CELLS})",
    )
    parser.add_argument(
        "--cell",
        type=int,
        default=None,
        metavar="PX",
        help="the longer side of each cell in the sheet (default: as computed)",
    )
    add_settings_arguments(parser)


def sweep_command(args: argparse.Namespace) -> int:
    try:
        result, steps = _start_sweep(args)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    from ..engine.explore import CellDone

    code = EXIT_OK
    try:
        for event in steps:
            if isinstance(event, CellDone):
                print(
                    f"cell {event.done}/{event.total} ({event.label}): {event.seconds:.1f} s",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        steps.close()
        code = EXIT_INTERRUPTED
    from PIL import Image

    Image.fromarray(result.contact_sheet(args.cell)).save(args.output)
    done = int(result.done.sum())
    print(
        f"wrote {args.output} ({done} of {result.done.size} cells"
        f"{', interrupted' if code else ''})",
        file=sys.stderr,
    )
    return code


def _start_sweep(args: argparse.Namespace):
    """The sweep's (result, steps) from the arguments; ValueError for bad input."""
    from ..engine.explore import iter_sweep, reconstruction_sweep
    from ..engine.explore_presets import PRESETS, parse_values, sweep_cost
    from ..io import check_writable, read_image

    options = settings_options(args)
    check_writable(args.output)
    if args.output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"{args.output.name}: write the contact sheet as .png or .jpg")
    content = read_image(args.content)
    title, rows, cols, kind = "", None, None, None
    if args.preset is not None:
        title, rows, cols, extra = PRESETS[args.preset]
        extra = dict(extra)
        kind = extra.pop("reconstruct", None)  # Fig. 1: from noise, one row
        options = {**extra, **options}
    if args.rows is not None:
        rows = (args.rows[0], parse_values(*args.rows))
    if args.cols is not None:
        cols = (args.cols[0], parse_values(*args.cols))
    if rows is None and cols is None:
        raise ValueError("nothing to sweep: give --rows NAME=V1;V2 (and --cols), or --preset")
    if kind is not None:
        if kind == "style" and args.style is None:
            raise ValueError(
                f"the {args.preset} preset reconstructs the style image's textures: "
                "give a style image file after the content"
            )
        image = read_image(args.style) if kind == "style" else content
        content, style, cols, settings = reconstruction_sweep(image, kind, **options)
    else:
        if args.style is None:
            raise ValueError("a style image file is needed (only fig1-content works without one)")
        style, settings = read_image(args.style), options
    sweep = iter_sweep(
        content, style, rows, cols, max_cells=args.max_cells, title=title, **settings
    )
    print(f"sweep: {sweep_cost(rows, cols, **settings)}", file=sys.stderr)
    return sweep
