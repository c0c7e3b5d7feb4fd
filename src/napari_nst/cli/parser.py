"""The ``napari-nst`` argument parser: ``stylize`` and ``gui`` here, ``sweep`` from ``sweep``,
the Settings options of each from ``options``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_settings_arguments
from .sweep import add_sweep_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-nst",
        description=(
            "Neural style transfer: Gatys et al. optimisation, Ghiasi et al. prediction or Li et "
            "al. universal style transfer."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_stylize_parser(commands)
    add_sweep_parser(commands)
    gui = commands.add_parser(
        "gui",
        help="open napari with the Style transfer widget",
        description="Open napari with the Style transfer widget and the "
        "sample images, or the given image files (a TIFF "
        "stack opens as a stack). Needs a display.",
    )
    gui.add_argument(
        "images", type=Path, nargs="*", help="image files to open (default: sample data)"
    )
    return parser


def _add_stylize_parser(commands) -> None:
    stylize = commands.add_parser(
        "stylize",
        help="stylize CONTENT with STYLE and write OUT",
        description="Stylize an image file. PNG, JPEG and TIFF "
        "(16-bit TIFF in and out). The result keeps the "
        "content's intensity range and its alpha where "
        "the output format can hold them. Ctrl-C stops "
        "the run and writes the image of the step it "
        "was at.",
    )
    stylize.add_argument("content", type=Path, help="content image file")
    stylize.add_argument(
        "style", type=Path, nargs="*", help="style image file(s); several are blended"
    )
    stylize.add_argument(
        "--style",
        dest="region_styles",
        action="append",
        type=_region_style,
        default=[],
        metavar="LABEL=FILE",
        help="with --regions: the style of one label (repeat for each label; "
        "the same label twice blends two styles); labels without one "
        "keep the content; 0 is the background",
    )
    stylize.add_argument(
        "--regions",
        dest="regions_file",
        type=Path,
        default=None,
        metavar="LABELS",
        help="a label image (e.g. a napari Labels layer saved as .tif) of the "
        "content's shape, or one per plane for --stack: a style per "
        "label (--style LABEL=FILE); a plain STYLE styles every non-zero "
        "label",
    )
    stylize.add_argument(
        "-o", "--output", type=Path, required=True, help="output file (.png/.jpg/.tif)"
    )
    stylize.add_argument(
        "--plane",
        type=_plane,
        default=None,
        metavar="N",
        help="for a TIFF stack such as (Z, H, W) or (T, Z, H, W, 3): the plane "
        "to stylize, counted over the leading axes in order (t*Z + z), or "
        "one index per leading axis (e.g. 2,5); used for every input that "
        "is a stack",
    )
    stylize.add_argument(
        "--bit-depth",
        type=int,
        choices=(8, 16),
        default=None,
        help="output bit depth (16 needs .tif; default: 16 for .tif when the "
        "content is 16-bit, else 8); a depth other than the content's "
        "stretches the result over the full range",
    )
    stylize.add_argument(
        "--save-intermediate",
        action="store_true",
        help="write the image at every loss line (about every steps/10 "
        "steps, or every --save-every N), not only the final image",
    )
    _add_stack_arguments(stylize)
    stylize.add_argument(
        "--init-image",
        dest="init_image_file",
        type=Path,
        default=None,
        metavar="FILE",
        help="optimize only: start from this image (of any size; resized to "
        "the working size) instead of the default start",
    )
    stylize.add_argument("-q", "--quiet", action="store_true", help="no progress bar or loss lines")
    add_settings_arguments(stylize)


def _add_stack_arguments(stylize: argparse.ArgumentParser) -> None:
    stylize.add_argument(
        "--stack",
        action="store_true",
        help="stylize every plane of a stack (a multi-page TIFF, a zarr array "
        "or OME-Zarr image, or a folder of images; a folder or .zarr "
        "implies it) into OUT: a .zarr store or a multi-page .tif. One "
        "style target and one intensity window for every plane",
    )
    stylize.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="with --stack: run the planes on the dask.distributed scheduler at "
        "ADDRESS (tcp://host:8786); default: on this machine",
    )
    stylize.add_argument(
        "--temporal-weight",
        type=float,
        default=None,
        metavar="W",
        help="with --stack: how strongly each plane keeps to the previous "
        "plane's result, moved by the optical flow between the two, where "
        "that motion is trusted (less flicker through z or t); default 1; "
        "0: every plane on its own (and in parallel on a cluster), e.g. "
        "for tiles or positions",
    )


def _plane(text: str) -> tuple[int, ...]:
    """``--plane N`` or ``--plane I,J``: non-negative integers."""
    try:
        index = tuple(int(part) for part in text.split(","))
    except ValueError:
        index = ()
    if not index or min(index) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plane number: give N (0, 1, ...) or "
            "one index per leading axis, e.g. 2,5"
        )
    return index


def _region_style(text: str) -> tuple[int, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label.strip().lstrip("-").isdigit() or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give LABEL=FILE, e.g. --style 1=starry.jpg")
    return int(label), Path(path)
