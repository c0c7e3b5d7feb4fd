"""The input files of ``stylize``: the style argument (one image, a blend, or a style per label
with ``--regions``) and a warning for a style that is the content itself."""

from __future__ import annotations

import sys


def warn_if_content_is_style(args) -> None:
    """A style that is the content file itself gives back about the content: say so."""
    styles = [*args.style, *(path for _, path in args.region_styles)]
    try:
        same = [path for path in styles if path.resolve() == args.content.resolve()]
    except OSError:
        same = []
    if same:
        print(
            f"napari-nst: warning: the style {same[0]} is the content file itself; the result "
            "will look much like the content (pass a painting or texture as the style)",
            file=sys.stderr,
        )


def read_styles(args, stack: bool = False):
    """The style argument of a run from the command line: one image, a list (blended), or with
    --regions a dict {label: image or list}; and the regions' labels (None without)."""
    from ..io import read_image, read_stack

    if args.style and args.region_styles:
        raise ValueError(
            "give the styles either as files after CONTENT or as --style "
            "LABEL=FILE with --regions, not both"
        )
    if args.region_styles and args.regions_file is None:
        raise ValueError(
            "--style LABEL=FILE says which label gets which style: add --regions "
            "LABELS (a label image of the content's shape)"
        )
    if not args.style and not args.region_styles:
        raise ValueError(
            "no style given: pass a style image file after CONTENT, or "
            "--regions LABELS --style LABEL=FILE"
        )
    labels = None
    if args.regions_file is not None:
        labels = (
            read_stack(args.regions_file) if stack else read_image(args.regions_file, args.plane)
        )
    if args.region_styles:
        mapping: dict = {}
        for label, path in args.region_styles:
            mapping.setdefault(label, []).append(read_image(path, args.plane))
        return {k: v if len(v) > 1 else v[0] for k, v in mapping.items()}, labels
    styles = [read_image(path, args.plane) for path in args.style]
    return (styles if len(styles) > 1 else styles[0]), labels
