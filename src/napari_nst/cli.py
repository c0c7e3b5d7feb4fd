"""The ``napari-nst`` command.

    napari-nst stylize CONTENT STYLE [STYLE ...] -o OUT [--steps N] [--size PX] [--device D] ...

Options are generated from ``napari_nst.settings.Settings`` and its field metadata (choices,
which methods read an option), so the CLI offers exactly what the API and the widget do. Exit
status: 0 success, 2 bad arguments or input (found before any work, the output location
included), 1 failure during the run, 130 interrupted. Ctrl-C writes the image of the step the
run was at; a failure, the latest kept image. Either goes to OUT, or, where OUT cannot be
written, to a file in the system's temp folder that the last line names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from .settings import Settings, field_annotation, field_choices, field_default, methods_note

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The CLI keeps the latest image in memory every this many steps (an emitted iterate), for a run
#: that fails (Ctrl-C instead writes the snapshot of the step it stopped at). An emission costs
#: about half a step (one forward pass without gradients, the copy to the host), so every 10 steps
#: slows a run by about 5% (benchmarks/bench_emit_cost.py).
KEEP_EVERY = 10
_STARTUP_INTERRUPT = "interrupted during start-up; nothing written"
#: Defaults of the CLI that differ from the API's (see ``_output_plan``).
_CLI_DEFAULTS = {"output_range": "content when the output file can hold the content's dtype "
                                 "(8-bit content, or 16-bit content in a .tif), else unit"}


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        if meta["cli"] is None:  # not a CLI option (emit_every: --save-every below)
            continue
        flag = "--" + f.name.replace("_", "-")
        default = field_default(f)
        if isinstance(default, tuple):  # a sequence given as text: "5,4,3,2,1"
            default = ",".join(map(str, default))
        only = f"{methods_note(f)}; " if methods_note(f) else ""
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS,
                  "help": f"{meta['help']} ({only}default: {_CLI_DEFAULTS.get(f.name, default)})"}
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
    parser.add_argument("--save-every", "--emit-every", dest="emit_every", type=int,
                        default=argparse.SUPPRESS, metavar="N",
                        help="also write the image every N steps as OUT_stepNNNN.EXT, with a "
                             "loss line (default: no intermediate files, a loss line about every "
                             "steps/10 steps)")


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
            raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, "
                                             "e.g. 0.5,0.5") from None
    return parse


def _plane(text: str) -> tuple[int, ...]:
    """``--plane N`` or ``--plane I,J``: non-negative integers."""
    try:
        index = tuple(int(part) for part in text.split(","))
    except ValueError:
        index = ()
    if not index or min(index) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a plane number: give N (0, 1, ...) or "
                                         "one index per leading axis, e.g. 2,5")
    return index


def _region_style(text: str) -> tuple[int, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label.strip().lstrip("-").isdigit() or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give LABEL=FILE, e.g. --style 1=starry.jpg")
    return int(label), Path(path)


def _warn_if_content_is_style(args) -> None:
    """A style that is the content file itself gives back about the content: say so."""
    styles = [*args.style, *(path for _, path in args.region_styles)]
    try:
        same = [path for path in styles if path.resolve() == args.content.resolve()]
    except OSError:
        same = []
    if same:
        print(f"napari-nst: warning: the style {same[0]} is the content file itself; the result "
              "will look much like the content (pass a painting or texture as the style)",
              file=sys.stderr)


def _read_styles(args, stack: bool = False):
    """The style argument of a run from the command line: one image, a list (blended), or with
    --regions a dict {label: image or list}; and the regions' labels (None without)."""
    from .io import read_image, read_stack

    if args.style and args.region_styles:
        raise ValueError("give the styles either as files after CONTENT or as --style "
                         "LABEL=FILE with --regions, not both")
    if args.region_styles and args.regions_file is None:
        raise ValueError("--style LABEL=FILE says which label gets which style: add --regions "
                         "LABELS (a label image of the content's shape)")
    if not args.style and not args.region_styles:
        raise ValueError("no style given: pass a style image file after CONTENT, or "
                         "--regions LABELS --style LABEL=FILE")
    labels = None
    if args.regions_file is not None:
        labels = read_stack(args.regions_file) if stack else read_image(args.regions_file,
                                                                        args.plane)
    if args.region_styles:
        mapping: dict = {}
        for label, path in args.region_styles:
            mapping.setdefault(label, []).append(read_image(path, args.plane))
        return {k: v if len(v) > 1 else v[0] for k, v in mapping.items()}, labels
    styles = [read_image(path, args.plane) for path in args.style]
    return (styles if len(styles) > 1 else styles[0]), labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-nst", description=(
        "Neural style transfer: Gatys et al. optimisation, Ghiasi et al. prediction or Li et "
        "al. universal style transfer."))
    commands = parser.add_subparsers(dest="command", required=True)
    stylize = commands.add_parser("stylize", help="stylize CONTENT with STYLE and write OUT",
                                  description="Stylize an image file. PNG, JPEG and TIFF "
                                              "(16-bit TIFF in and out). The result keeps the "
                                              "content's intensity range and its alpha where "
                                              "the output format can hold them. Ctrl-C stops "
                                              "the run and writes the image of the step it "
                                              "was at.")
    stylize.add_argument("content", type=Path, help="content image file")
    stylize.add_argument("style", type=Path, nargs="*",
                         help="style image file(s); several are blended")
    stylize.add_argument("--style", dest="region_styles", action="append", type=_region_style,
                         default=[], metavar="LABEL=FILE",
                         help="with --regions: the style of one label (repeat for each label; "
                              "the same label twice blends two styles); labels without one "
                              "keep the content; 0 is the background")
    stylize.add_argument("--regions", dest="regions_file", type=Path, default=None,
                         metavar="LABELS",
                         help="a label image (e.g. a napari Labels layer saved as .tif) of the "
                              "content's shape, or one per plane for --stack: a style per "
                              "label (--style LABEL=FILE); a plain STYLE styles every non-zero "
                              "label")
    stylize.add_argument("-o", "--output", type=Path, required=True, help="output file (.png/.jpg/.tif)")
    stylize.add_argument("--plane", type=_plane, default=None, metavar="N",
                         help="for a TIFF stack such as (Z, H, W) or (T, Z, H, W, 3): the plane "
                              "to stylize, counted over the leading axes in order (t*Z + z), or "
                              "one index per leading axis (e.g. 2,5); used for every input that "
                              "is a stack")
    stylize.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                         help="output bit depth (16 needs .tif; default: 16 for .tif when the "
                              "content is 16-bit, else 8); a depth other than the content's "
                              "stretches the result over the full range")
    stylize.add_argument("--save-intermediate", action="store_true",
                         help="write the image at every loss line (about every steps/10 "
                              "steps, or every --save-every N), not only the final image")
    stylize.add_argument("--stack", action="store_true",
                         help="stylize every plane of a stack (a multi-page TIFF, a zarr array "
                              "or OME-Zarr image, or a folder of images; a folder or .zarr "
                              "implies it) into OUT: a .zarr store or a multi-page .tif. One "
                              "style target and one intensity window for every plane")
    stylize.add_argument("--scheduler", metavar="ADDRESS", default=None,
                         help="with --stack: run the planes on the dask.distributed scheduler at "
                              "ADDRESS (tcp://host:8786); default: on this machine")
    stylize.add_argument("--temporal-weight", type=float, default=None, metavar="W",
                         help="with --stack: how strongly each plane keeps to the previous "
                              "plane's result, moved by the optical flow between the two, where "
                              "that motion is trusted (less flicker through z or t); default 1; "
                              "0: every plane on its own (and in parallel on a cluster), e.g. "
                              "for tiles or positions")
    stylize.add_argument("--init-image", dest="init_image_file", type=Path, default=None,
                         metavar="FILE",
                         help="optimize only: start from this image (of any size; resized to "
                              "the working size) instead of the default start")
    stylize.add_argument("-q", "--quiet", action="store_true", help="no progress bar or loss lines")
    _add_settings_arguments(stylize)
    from .cli_sweep import add_sweep_parser

    add_sweep_parser(commands, _add_settings_arguments)
    gui = commands.add_parser("gui", help="open napari with the Style transfer widget",
                              description="Open napari with the Style transfer widget and the "
                                          "sample images, or the given image files (a TIFF "
                                          "stack opens as a stack). Needs a display.")
    gui.add_argument("images", type=Path, nargs="*", help="image files to open (default: sample data)")
    return parser


#: Qt platforms that draw on an X11 or Wayland display; any other (offscreen, minimal, vnc,
#: eglfs, linuxfb, ...) needs none.
_DISPLAY_PLATFORMS = {"xcb": "DISPLAY", "wayland": "WAYLAND_DISPLAY", "wayland-egl": "WAYLAND_DISPLAY"}


def display_problem(environ=None, platform: str | None = None) -> str | None:
    """Why Qt cannot open a window here, or None. On Linux (and the BSDs) Qt aborts the process
    with a long message when there is no display; this says it in one line beforehand."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not (platform.startswith("linux") or "bsd" in platform):
        return None  # Windows and macOS always have their native platform
    requested = [name.split(":")[0].strip() for name in environ.get("QT_QPA_PLATFORM", "").split(";")]
    requested = [name for name in requested if name] or ["xcb", "wayland"]  # Qt's own choice
    if any(environ.get(_DISPLAY_PLATFORMS.get(name, ""), "") or name not in _DISPLAY_PLATFORMS
           for name in requested):
        return None
    return ("napari-nst gui needs a display: run it on a desktop, or under xvfb-run "
            f"(no {' or '.join(sorted({_DISPLAY_PLATFORMS[name] for name in requested}))} is set)")


def gui_command(args: argparse.Namespace) -> int:
    problem = display_problem()
    if problem:
        return _fail(problem, EXIT_FAILED)
    from .io import read_stack

    try:
        images = [(read_stack(path), path.stem) for path in args.images]
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        import napari
    except ImportError as exc:
        return _fail(f"napari with a Qt binding is needed ({exc}); pip install 'napari-nst[qt]'",
                     EXIT_FAILED)
    viewer = napari.Viewer(title="napari-nst")
    for data, name in images:
        viewer.add_image(data, name=name)
    if not images:
        viewer.open_sample("napari-nst", "astronaut_painting")
    viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    open_at_a_useful_size(viewer)
    napari.run()
    return EXIT_OK


#: The window ``napari-nst gui`` opens: room for the layer list, the canvas and the widget.
GUI_SIZE = (1500, 950)


def open_at_a_useful_size(viewer) -> tuple[int, int]:
    """Size the window to ``GUI_SIZE`` (within the screen) and fit the view to every layer once
    the window has its size: napari opens small and fits to the first layer only (the sample's
    style, beside the content, was cut off). Returns the (width, height) asked for."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    width, height = GUI_SIZE
    if screen is not None:
        available = screen.availableGeometry()
        width, height = min(width, int(available.width() * 0.95)), min(
            height, int(available.height() * 0.95))
    viewer.window.resize(width, height)
    viewer.reset_view()
    QTimer.singleShot(0, viewer.reset_view)  # again once the canvas has its new size
    return width, height


def _fail(message: str, code: int) -> int:
    print(f"napari-nst: error: {message}", file=sys.stderr)
    return code


def _format_losses(losses: dict) -> str:
    order = ["total"] + sorted(k for k in losses if k != "total")
    return " ".join(f"{k}={losses[k]:.4g}" for k in order if k in losses)


def _intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def save_intervals(steps: int, save_every: int | None) -> tuple[int, int]:
    """(keep_every, report_every): the engine emits (and the CLI keeps) an image every
    ``keep_every`` steps; a loss line (and, when asked, an intermediate file) comes every
    ``report_every`` steps, a multiple of it. Without ``save_every`` the lines come about ten
    times a run; with it, ``keep_every`` is the divisor of ``save_every`` nearest to KEEP_EVERY
    (a prime 13 keeps one every 13 steps rather than slow every step down by half)."""
    if save_every is None:
        keep = min(KEEP_EVERY, max(1, steps // 10))
        return keep, keep * max(1, round(steps / 10 / keep))
    divisors = [d for d in range(1, save_every + 1) if save_every % d == 0]
    return min(divisors, key=lambda d: (abs(d - KEEP_EVERY), d)), save_every


def _user_weights_paths(settings) -> list[str]:
    """Paths of weights the user named (options and $NAPARI_NST_WEIGHTS_DIR): a weights error
    about one of them is bad input (exit 2), not a failure of the run."""
    from .engine.weights import WEIGHTS_DIR_ENV

    given = [settings.vgg_weights, settings.predictor_weights, settings.transformer_weights,
             settings.weights_dir, os.environ.get(WEIGHTS_DIR_ENV) or None]
    return [str(Path(p).expanduser()) for p in given if isinstance(p, (str, os.PathLike))]


def _write_somewhere(output: Path, pixels, bit_depth: int) -> tuple[Path | None, str | None]:
    """Write ``pixels`` to ``output``; if that fails, to a new file in the system's temp folder.
    Returns (where it went, or None; why ``output`` failed, or None)."""
    from .io import write_image

    try:
        return write_image(output, pixels, bit_depth), None
    except Exception as exc:  # a full disk, a folder removed or locked during the run
        problem = f"cannot write {output} ({exc.__class__.__name__}: {exc})"
    try:
        handle, name = tempfile.mkstemp(prefix=f"napari-nst-{output.stem}-", suffix=output.suffix)
        os.close(handle)
        return write_image(name, pixels, bit_depth), problem
    except Exception as exc:
        return None, f"{problem}, nor a copy in {tempfile.gettempdir()} ({exc})"


def settings_options(args: argparse.Namespace) -> dict:
    """The Settings fields given on the command line (options not given are absent)."""
    names = {f.name for f in dataclasses.fields(Settings)}
    return {k: v for k, v in vars(args).items() if k in names}


def stylize_command(args: argparse.Namespace) -> int:
    from .io import check_output, check_writable, is_zarr, keeps_alpha, read_image

    options = settings_options(args)
    if args.stack or args.content.is_dir() or is_zarr(args.content):
        return stack_command(args, options)
    for flag, value in (("--scheduler", args.scheduler), ("--temporal-weight", args.temporal_weight)):
        if value is not None:
            return _fail(f"{flag} is for the planes of a stack: add --stack", EXIT_USAGE)
    save_every = options.get("emit_every")
    save_intermediate = args.save_intermediate or save_every is not None
    try:
        settings = Settings(**options)
        keep_every, report_every = save_intervals(settings.steps, save_every)
        settings = settings.replace(emit_every=keep_every)
        check_writable(args.output)
        content = read_image(args.content, args.plane)
        style, labels = _read_styles(args)
        settings = settings.replace(regions=labels)
        if args.init_image_file is not None:
            settings = settings.replace(init_image=read_image(args.init_image_file, args.plane))
        _warn_if_content_is_style(args)
        output_range, bit_depth = _output_plan(content.dtype, args.output, args.bit_depth,
                                               options.get("output_range"))
        settings = settings.replace(output_range=output_range)
        check_output(args.output, bit_depth)
        if content.ndim == 3 and content.shape[2] == 4 and not keeps_alpha(args.output):
            print(f"napari-nst: note: {args.output.suffix} has no alpha channel; the content's "
                  "transparency is dropped (write .png or .tif to keep it)", file=sys.stderr)
        from .engine.run import run_steps

        steps = run_steps(content, style, settings)
    except ValueError as exc:  # bad input, bad setting, device not present
        return _fail(str(exc), EXIT_USAGE)

    try:
        return _drive(args, steps, settings, content, bit_depth, keep_every, report_every,
                      save_intermediate)
    except KeyboardInterrupt:  # Ctrl-C (again) while the image is written
        print(f"napari-nst: interrupted while writing {args.output}; it may be incomplete",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _drive(args, steps, settings, content, bit_depth: int, keep_every: int, report_every: int,
           save_intermediate: bool) -> int:
    """Run ``steps`` with a progress bar and loss lines; write the result, or on Ctrl-C or a
    failure the latest kept image; return the exit status."""
    from tqdm import tqdm

    from .engine.weights import WeightsError
    from .io import write_image

    bar = tqdm(total=settings.total_steps(), unit="step", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True)
    latest = None  # the latest emitted iterate: what a failure writes
    last = None  # the latest iterate of any step: Ctrl-C writes its snapshot
    current = 0
    losses_by_scale: dict = {}  # (H, W) -> [first, last] losses of the emitted iterates there

    def save(iterate) -> tuple[Path | None, str | None]:
        return _write_somewhere(args.output, _output_pixels(iterate.image, content), bit_depth)

    def kept(iterate) -> str:
        """Where ``iterate`` went, for the last line."""
        path, problem = save(iterate)
        what = f"the image of step {iterate.step}"
        if problem is None:
            return f"wrote {what} to {path}"
        return f"{problem}; {what} is in {path}" if path else f"{problem}; {what} is lost"

    try:
        for it in steps:
            current, last = it.step, it
            bar.update(it.step - bar.n)
            if not it.emitted:
                continue
            latest = it
            if it.losses:
                losses_by_scale.setdefault(tuple(it.scale), [it.losses])[1:] = [it.losses]
            if it.step % report_every and not it.done:
                continue
            if it.losses:
                bar.set_postfix_str(_format_losses(it.losses))
                if not args.quiet:
                    bar.write(f"step {it.step}/{it.total_steps} {it.scale[1]}x{it.scale[0]} px "
                              f"{_format_losses(it.losses)} ({it.elapsed:.1f} s)", file=sys.stderr)
            if save_intermediate and not it.done:
                path = _intermediate_path(args.output, it.step)
                try:
                    write_image(path, _output_pixels(it.image, content), bit_depth)
                except Exception as exc:  # the run goes on; the final image is kept regardless
                    bar.write(f"napari-nst: warning: cannot write {path} ({exc}); no more "
                              "intermediate files are written", file=sys.stderr)
                    save_intermediate = False
    except KeyboardInterrupt:
        bar.close()
        latest = _at_latest_step(last, latest)
        if current == 0:
            print(f"napari-nst: {_STARTUP_INTERRUPT}", file=sys.stderr)
        elif latest is None:
            print(f"napari-nst: interrupted at step {current}/{settings.steps}, before the first "
                  f"kept image (one every {keep_every} steps); nothing written", file=sys.stderr)
        else:
            print(f"napari-nst: interrupted at step {current}/{settings.steps}; {kept(latest)}",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a failure during the run: weights, memory, device
        bar.close()
        message = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, ValueError) and current == 0:
            return _fail(str(exc), EXIT_USAGE)  # a check that needs the network (image too small)
        if isinstance(exc, WeightsError):
            message = str(exc)
            if any(path in message for path in _user_weights_paths(settings)):
                return _fail(message, EXIT_USAGE)  # a weights file the user named is bad input
        if latest is not None:  # nothing is lost: the latest image is kept
            message += f"; {kept(latest)}"
        return _fail(message, EXIT_FAILED)
    bar.close()
    path, problem = save(latest)
    if problem is not None:
        return _fail(f"{problem}; the result is in {path}" if path else
                     f"{problem}; the result is lost", EXIT_FAILED)
    if not args.quiet:
        summary = f"wrote {path} after {latest.step} step(s) in {latest.elapsed:.1f} s"
        print(summary + loss_summary(losses_by_scale), file=sys.stderr)
    return EXIT_OK


def loss_summary(losses_by_scale: dict) -> str:
    """"; total loss A -> B" over the run, or per scale for coarse-to-fine: a finer scale's loss
    measures more detail, so it is not comparable with a coarser one's (it may start higher)."""
    spans = [(scale, pair[0]["total"], pair[-1]["total"]) for scale, pair in
             losses_by_scale.items() if "total" in pair[0] and "total" in pair[-1]]
    if not spans or (len(spans) == 1 and len(losses_by_scale[spans[0][0]]) == 1):
        return ""
    if len(spans) == 1:
        return f"; total loss {spans[0][1]:.4g} -> {spans[0][2]:.4g}"
    per_scale = ", ".join(f"{w}x{h} px {first:.4g} -> {last:.4g}"
                          for (h, w), first, last in spans)
    return (f"; total loss per scale (each finer scale measures more detail, so losses compare "
            f"within a scale only): {per_scale}")


def _at_latest_step(last, latest):
    """The iterate to write on Ctrl-C: the run's image at its latest step (its snapshot, taken
    now) when it is newer than the latest emitted one; the latter if the snapshot fails."""
    if last is None or last.emitted or last.snapshot is None:
        return latest
    try:
        return dataclasses.replace(last, image=last.snapshot())
    except Exception:  # the tensor mid-update or gone: fall back to what was kept
        return latest


def stack_command(args: argparse.Namespace, options: dict) -> int:
    """Every plane of a stack into a zarr store or a multi-page TIFF, with a progress bar over
    planes. Ctrl-C or a failure keeps the planes done: a zarr store has them already; a TIFF is
    written with them (planes not done are black) and the message names how many are missing."""
    import numpy as np

    from .engine.stack import iter_stack, temporary_store
    from .io import TIFF_SUFFIXES, check_writable, open_stack

    output = args.output
    as_tiff = output.suffix.lower() in TIFF_SUFFIXES
    client = None
    try:
        if not as_tiff and output.suffix.lower() != ".zarr":
            why = ("is a folder, read as a stack of its images" if args.content.is_dir() else
                   "is stylized as a stack")
            raise ValueError(f"{args.content} {why}; a stack is written to a .zarr store or a "
                             f".tif file, not {output.name}")
        if args.init_image_file is not None:
            raise ValueError("--init-image is for single images; a stack's planes start from "
                             "the method's default start")
        if args.bit_depth is not None:
            raise ValueError("--bit-depth is for single images; a stack keeps its content's "
                             "dtype (uint8, uint16) or is written as float32 in 0..1")
        if output.exists():
            raise ValueError(f"{output} exists already; choose a new path or remove it")
        check_writable(output)
        stack = open_stack(args.content)
        style, labels = _read_styles(args, stack=True)
        options["regions"] = labels
        native = np.dtype(stack.dtype) in (np.dtype(np.uint8), np.dtype(np.uint16))
        if options.get("output_range") is None:  # as for one image: the content's own range
            options["output_range"] = "content" if native else "unit"
        settings = Settings(**{k: v for k, v in options.items() if v is not None})
        client = _connect(args.scheduler)
        store = temporary_store() if as_tiff else str(output)
        run = iter_stack(stack, style, out=store,
                         client=client, settings=settings, temporal_weight=args.temporal_weight)
    except ValueError as exc:
        if client is not None:
            client.close()
        return _fail(str(exc), EXIT_USAGE)
    from tqdm import tqdm

    grayscale = not (stack.ndim >= 3 and stack.shape[-1] in (3, 4))
    bar = tqdm(total=int(np.prod(run.output.shape[:-3])), unit="plane", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)
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
        _write_tiff_stack(output, run.output, grayscale)
    total = bar.total
    if problem:
        print(f"napari-nst: {problem} after {done} of {total} planes; {output} holds the planes "
              f"done, {total - done} missing" + (" (black)" if as_tiff else " (zeros)"),
              file=sys.stderr)
    elif not args.quiet:
        print(f"wrote {output} ({total} planes)", file=sys.stderr)
    return code


def _connect(address):
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs the distributed package: "
                         "pip install 'napari-nst[distributed]'") from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise ValueError(f"cannot reach a dask scheduler at {address} ({exc})") from exc


def _write_tiff_stack(path: Path, result, grayscale: bool) -> None:
    """The result planes as pages of one TIFF, plane by plane (never the whole stack in memory),
    its leading axes kept in the file's shape."""
    import numpy as np
    import tifffile

    leading = result.shape[:-3]
    with tifffile.TiffWriter(path) as tiff:
        for index in np.ndindex(*leading):
            plane = np.asarray(result[index])
            plane = plane[..., 0] if grayscale else plane
            first = not any(index)
            tiff.write(plane, contiguous=True, photometric="minisblack" if grayscale else "rgb",
                       metadata={"shape": (*leading, *plane.shape)} if first else None)


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
    command = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        if command == "stylize":
            return stylize_command(args)
        if command == "gui":
            return gui_command(args)
        if command == "sweep":
            from .cli_sweep import sweep_command

            return sweep_command(args, _fail, (EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED))
        parser.error(f"unknown command {command}")
    except KeyboardInterrupt:  # Ctrl-C while torch or napari loads: one line, not a traceback
        print("napari-nst: " + (_STARTUP_INTERRUPT if command == "stylize" else "interrupted"),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
