"""The ``napari-nst`` command.

    napari-nst stylize CONTENT STYLE [STYLE ...] -o OUT [--steps N] [--size PX] [--device D] ...

Options are generated from ``napari_nst.settings.Settings``, so the CLI offers exactly what the
API and the widget do. Exit status: 0 success, 2 bad arguments or input, 1 failure during the run,
130 interrupted (the latest image is still written).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Defaults of the CLI that differ from the API's (see ``_output_plan``).
_CLI_DEFAULTS = {"output_range": "content when the output file can hold the content's dtype "
                                 "(8-bit content, or 16-bit content in a .tif), else unit"}


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        if not meta.get("cli"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS,
                  "help": f"{meta['help']} (default: {_CLI_DEFAULTS.get(f.name, default)})"}
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if isinstance(default, (int, float)):
            kwargs["type"] = type(default)
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if f.name == "vgg_weights":
            kwargs["metavar"] = "PATH"
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--save-every", dest="emit_every", type=int, default=argparse.SUPPRESS,
                        help="also write the image every N steps as OUT_stepNNNN.EXT "
                             "(alias of --emit-every)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-nst", description=(
        "Neural style transfer: Gatys et al. optimisation or Ghiasi et al. prediction."))
    commands = parser.add_subparsers(dest="command", required=True)
    stylize = commands.add_parser("stylize", help="stylize CONTENT with STYLE and write OUT",
                                  description="Stylize an image file. PNG, JPEG and TIFF "
                                              "(16-bit TIFF in and out). The result keeps the "
                                              "content's intensity range and its alpha where "
                                              "the output format can hold them.")
    stylize.add_argument("content", type=Path, help="content image file")
    stylize.add_argument("style", type=Path, nargs="+", help="style image file(s); several are blended")
    stylize.add_argument("-o", "--output", type=Path, required=True, help="output file (.png/.jpg/.tif)")
    stylize.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                         help="output bit depth (16 needs .tif; default: 16 for .tif when the "
                              "content is 16-bit, else 8); a depth other than the content's "
                              "stretches the result over the full range")
    stylize.add_argument("--save-intermediate", action="store_true",
                         help="write every emitted iterate, not only the final image")
    stylize.add_argument("-q", "--quiet", action="store_true", help="no progress bar or loss lines")
    _add_settings_arguments(stylize)
    gui = commands.add_parser("gui", help="open napari with the Style transfer widget",
                              description="Open napari with the Style transfer widget and the "
                                          "sample images, or the given image files.")
    gui.add_argument("images", type=Path, nargs="*", help="image files to open (default: sample data)")
    return parser


def gui_command(args: argparse.Namespace) -> int:
    try:
        import napari
    except ImportError as exc:
        return _fail(f"napari with a Qt binding is needed ({exc}); pip install 'napari-nst[qt]'",
                     EXIT_FAILED)
    viewer = napari.Viewer(title="napari-nst")
    if args.images:
        from .io import read_image

        for path in args.images:
            viewer.add_image(read_image(path), name=path.stem)
    else:
        viewer.open_sample("napari-nst", "astronaut_painting")
    viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    napari.run()
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"napari-nst: error: {message}", file=sys.stderr)
    return code


def _format_losses(losses: dict) -> str:
    order = ["total"] + sorted(k for k in losses if k != "total")
    return " ".join(f"{k}={losses[k]:.4g}" for k in order if k in losses)


def _intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def stylize_command(args: argparse.Namespace) -> int:
    from .io import check_output, keeps_alpha, read_image, write_image

    options = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(Settings)}}
    save_intermediate = args.save_intermediate or "emit_every" in vars(args)
    try:
        if "emit_every" not in options:  # report the losses about ten times, without saving images
            options["emit_every"] = max(1, options.get("steps", Settings.steps) // 10)
        settings = Settings(**options)
        content = read_image(args.content)
        styles = [read_image(path) for path in args.style]
        output_range, bit_depth = _output_plan(content.dtype, args.output, args.bit_depth,
                                               options.get("output_range"))
        settings = settings.replace(output_range=output_range)
        check_output(args.output, bit_depth)
        if content.ndim == 3 and content.shape[2] == 4 and not keeps_alpha(args.output):
            print(f"napari-nst: note: {args.output.suffix} has no alpha channel; the content's "
                  "transparency is dropped (write .png or .tif to keep it)", file=sys.stderr)
        from .engine.run import run_steps

        steps = run_steps(content, styles if len(styles) > 1 else styles[0], settings)
    except ValueError as exc:  # bad input, bad setting, device not present
        return _fail(str(exc), EXIT_USAGE)

    from tqdm import tqdm

    bar = tqdm(total=settings.steps if settings.method == "optimize" else 1, unit="step",
               disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    latest = None
    first_losses = None

    def save(iterate, path=args.output):
        write_image(path, _output_pixels(iterate.image, content), bit_depth)

    try:
        for it in steps:
            bar.update(it.step - bar.n)
            if not it.emitted:
                continue
            latest = it
            if it.losses:
                first_losses = first_losses or it.losses
                bar.set_postfix_str(_format_losses(it.losses))
                if not args.quiet:
                    bar.write(f"step {it.step}/{it.total_steps} {it.scale[1]}x{it.scale[0]} px "
                              f"{_format_losses(it.losses)} ({it.elapsed:.1f} s)", file=sys.stderr)
            if save_intermediate and not it.done:
                save(it, _intermediate_path(args.output, it.step))
    except KeyboardInterrupt:
        bar.close()
        if latest is not None:
            save(latest)
            print(f"napari-nst: interrupted; wrote step {latest.step} to {args.output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a failure during the run: weights, memory, device
        bar.close()
        if latest is not None:  # nothing is lost: the latest image is kept
            save(latest)
        return _fail(f"{exc.__class__.__name__}: {exc}", EXIT_FAILED)
    bar.close()
    save(latest)
    if not args.quiet:
        summary = f"wrote {args.output} after {latest.step} step(s) in {latest.elapsed:.1f} s"
        if first_losses and latest.losses and first_losses is not latest.losses:
            summary += (f"; total loss {first_losses['total']:.4g} -> {latest.losses['total']:.4g}")
        print(summary, file=sys.stderr)
    return EXIT_OK


def _output_plan(dtype, output: Path, bit_depth: int | None, output_range: str | None):
    """(output_range, bit_depth) for writing a result of content of ``dtype`` to ``output``.

    By default the result keeps the content's own intensity range and dtype when the file holds
    that dtype as it is: uint8 content (any format), uint16 content in a TIFF -- so a 16-bit TIFF
    with values 300..3352 comes back as one with values in about 300..3352. Otherwise, or with
    ``output_range="unit"``, the result's 0..1 is stretched over the bit depth, which defaults to 16
    for a TIFF of 16-bit content and 8 otherwise. An explicit "content" that the file cannot hold
    is a ValueError naming the alternatives.
    """
    import numpy as np

    from .io import TIFF_SUFFIXES

    is_tiff = output.suffix.lower() in TIFF_SUFFIXES
    native = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(np.dtype(dtype))
    if native == 16 and not is_tiff:
        native = None  # PNG and JPEG are written at 8 bits
    if output_range != "unit" and native is not None and bit_depth in (None, native):
        return "content", native
    if output_range == "content":
        if native is None:
            where = ("a .tif output" if np.dtype(dtype) == np.uint16 else
                     f"uint8 or uint16 content (this content is {np.dtype(dtype).name})")
            raise ValueError(f"--output-range content needs {where}; use --output-range unit "
                             "to stretch the result over the output's bit depth")
        raise ValueError(f"--output-range content writes {np.dtype(dtype).name} content at "
                         f"{native} bits, not --bit-depth {bit_depth}; drop one of the two")
    if bit_depth is None:
        bit_depth = 16 if is_tiff and np.dtype(dtype) == np.uint16 else 8
    return "unit", bit_depth


def _output_pixels(image, content):
    """Grayscale content is written as a one-channel image."""
    return image[..., 0] if content.ndim == 2 or (content.ndim == 3 and content.shape[2] == 1) else image


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "stylize":
        return stylize_command(args)
    if args.command == "gui":
        return gui_command(args)
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
