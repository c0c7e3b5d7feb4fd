"""``napari-nst stylize --stack``: every plane of a stack into a zarr store or a multi-page
TIFF, with a progress bar over planes, on this machine or a dask.distributed scheduler."""

from __future__ import annotations

import argparse
import sys

from ..settings import Settings
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail
from .inputs import read_styles
from .output import write_tiff_stack


def stack_command(args: argparse.Namespace, options: dict) -> int:
    """Every plane of a stack into a zarr store or a multi-page TIFF, with a progress bar over
    planes. Ctrl-C or a failure keeps the planes done: a zarr store has them already; a TIFF is
    written with them (planes not done are black) and the message names how many are missing."""
    import numpy as np

    from ..engine.stack import iter_stack, temporary_store
    from ..io import TIFF_SUFFIXES, check_writable, open_stack

    output = args.output
    as_tiff = output.suffix.lower() in TIFF_SUFFIXES
    client = None
    try:
        _check_stack_arguments(args, as_tiff)
        check_writable(output)
        stack = open_stack(args.content)
        style, labels = read_styles(args, stack=True)
        options["regions"] = labels
        native = np.dtype(stack.dtype) in (np.dtype(np.uint8), np.dtype(np.uint16))
        if options.get("output_range") is None:  # as for one image: the content's own range
            options["output_range"] = "content" if native else "unit"
        settings = Settings(**{k: v for k, v in options.items() if v is not None})
        client = _connect(args.scheduler)
        store = temporary_store() if as_tiff else str(output)
        run = iter_stack(
            stack,
            style,
            out=store,
            client=client,
            settings=settings,
            temporal_weight=args.temporal_weight,
        )
    except ValueError as exc:
        if client is not None:
            client.close()
        return fail(str(exc), EXIT_USAGE)
    grayscale = not (stack.ndim >= 3 and stack.shape[-1] in (3, 4))
    return _run_planes(args, run, client, as_tiff, grayscale)


def _check_stack_arguments(args: argparse.Namespace, as_tiff: bool) -> None:
    """ValueError for options that a stack run does not take, or an output it cannot write."""
    output = args.output
    if not as_tiff and output.suffix.lower() != ".zarr":
        why = (
            "is a folder, read as a stack of its images"
            if args.content.is_dir()
            else "is stylized as a stack"
        )
        raise ValueError(
            f"{args.content} {why}; a stack is written to a .zarr store or a "
            f".tif file, not {output.name}"
        )
    if args.init_image_file is not None:
        raise ValueError(
            "--init-image is for single images; a stack's planes start from "
            "the method's default start"
        )
    if args.bit_depth is not None:
        raise ValueError(
            "--bit-depth is for single images; a stack keeps its content's "
            "dtype (uint8, uint16) or is written as float32 in 0..1"
        )
    if output.exists():
        raise ValueError(f"{output} exists already; choose a new path or remove it")


def _run_planes(args: argparse.Namespace, run, client, as_tiff: bool, grayscale: bool) -> int:
    """Iterate the run with a bar over planes; write the TIFF (of the planes done) and say how
    it ended; return the exit status."""
    import numpy as np
    from tqdm import tqdm

    output = args.output
    bar = tqdm(
        total=int(np.prod(run.output.shape[:-3])),
        unit="plane",
        disable=args.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    done, problem, code = 0, None, EXIT_OK
    try:
        for plane in run:
            done = plane.done
            bar.update(1)
    except KeyboardInterrupt:
        problem, code = "interrupted", EXIT_INTERRUPTED
    except Exception as exc:  # weights, memory, a worker lost for good: keep what is done
        problem, code = f"failed ({exc.__class__.__name__}: {exc})", EXIT_FAILED
    finally:
        bar.close()
        if client is not None:
            client.close()
    if as_tiff:
        write_tiff_stack(output, run.output, grayscale)
    total = bar.total
    if problem:
        print(
            f"napari-nst: {problem} after {done} of {total} planes; {output} holds the planes "
            f"done, {total - done} missing" + (" (black)" if as_tiff else " (zeros)"),
            file=sys.stderr,
        )
    elif not args.quiet:
        print(f"wrote {output} ({total} planes)", file=sys.stderr)
    return code


def _connect(address):
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(
            "--scheduler needs the distributed package: pip install 'napari-nst[distributed]'"
        ) from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise ValueError(f"cannot reach a dask scheduler at {address} ({exc})") from exc
