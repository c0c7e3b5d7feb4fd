"""``napari-nst stylize`` of one image: checks every input and the output location before any
work (exit 2), then hands the run to ``progress.drive``; a stack goes to ``stack``."""

from __future__ import annotations

import argparse
import sys

from ..settings import Settings
from .common import EXIT_INTERRUPTED, EXIT_USAGE, fail
from .inputs import read_styles, warn_if_content_is_style
from .options import settings_options
from .output import output_plan
from .progress import drive, save_intervals
from .stack import stack_command


def stylize_command(args: argparse.Namespace) -> int:
    from ..io import is_zarr

    options = settings_options(args)
    if args.stack or args.content.is_dir() or is_zarr(args.content):
        return stack_command(args, options)
    for flag, value in (
        ("--scheduler", args.scheduler),
        ("--temporal-weight", args.temporal_weight),
    ):
        if value is not None:
            return fail(f"{flag} is for the planes of a stack: add --stack", EXIT_USAGE)
    save_every = options.get("emit_every")
    save_intermediate = args.save_intermediate or save_every is not None
    try:
        settings = Settings(**options)
        keep_every, report_every = save_intervals(settings.steps, save_every)
        settings = settings.replace(emit_every=keep_every)
        content, style, settings, bit_depth = _prepare(args, settings, options.get("output_range"))
        from ..engine.run import run_steps

        steps = run_steps(content, style, settings)
    except ValueError as exc:  # bad input, bad setting, device not present
        return fail(str(exc), EXIT_USAGE)

    try:
        return drive(
            args, steps, settings, content, bit_depth, keep_every, report_every, save_intermediate
        )
    except KeyboardInterrupt:  # Ctrl-C (again) while the image is written
        print(
            f"napari-nst: interrupted while writing {args.output}; it may be incomplete",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _prepare(args: argparse.Namespace, settings: Settings, output_range: str | None):
    """(content, style, settings, bit_depth) read and checked from the arguments, the output
    location included; ValueError for bad input."""
    from ..io import check_output, check_writable, keeps_alpha, read_image

    check_writable(args.output)
    content = read_image(args.content, args.plane)
    style, labels = read_styles(args)
    settings = settings.replace(regions=labels)
    if args.init_image_file is not None:
        settings = settings.replace(init_image=read_image(args.init_image_file, args.plane))
    warn_if_content_is_style(args)
    output_range, bit_depth = output_plan(content.dtype, args.output, args.bit_depth, output_range)
    settings = settings.replace(output_range=output_range)
    check_output(args.output, bit_depth)
    if content.ndim == 3 and content.shape[2] == 4 and not keeps_alpha(args.output):
        print(
            f"napari-nst: note: {args.output.suffix} has no alpha channel; the content's "
            "transparency is dropped (write .png or .tif to keep it)",
            file=sys.stderr,
        )
    return content, style, settings, bit_depth
