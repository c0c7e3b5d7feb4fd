"""Flicker of whole-stack runs against independent per-plane runs (issue 14), printed as tables.

Two stacks:

* pan: windows cut from a shared photograph, each ``shift`` pixels further right. After undoing
  that shift two consecutive contents are equal, so any difference between consecutive results
  is flicker. Flicker = mean absolute difference of consecutive result frames over their overlap,
  shift undone.
* nuclei: a real fluorescence z-stack of nuclei (``img3d.tif``, 31 x 61 x 57 uint16, that the
  stardist package bundles as its 3-D test image; ``pip install stardist``), consecutive planes
  from its middle, upscaled to the working size. Consecutive contents differ here (nuclei come
  into and out of focus), so the results' difference is part content, part flicker; the
  content's own difference is printed beside it.

Style = the quality benchmark's style score (cosine of Magenta style embeddings), mean over the
frames. Rows: stack mode (``stylize_stack``: one style target, one window, and the temporal term
towards the previous plane's moved result; optimize also starts each plane from it) and
independent runs (``stylize`` per plane with the stack's window), for optimize (distilled
VGG-19) and predict.

    python benchmarks/bench_flicker.py            # pan: 8 frames of 128 px; nuclei: 12 planes
    python benchmarks/bench_flicker.py --smoke    # 3 frames of 64 px, few steps
    python benchmarks/bench_flicker.py --optimize-weight 30 --predict-weight 2 --case pan
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
from quality import Judge, load_rgb


def pan(photo: np.ndarray, frames: int, side: int, shift: int) -> np.ndarray:
    """``frames`` windows of ``side`` x ``side`` pixels, each ``shift`` px further right."""
    from PIL import Image

    height = side
    width = side
    scale = height / photo.shape[0]
    wide = np.asarray(
        Image.fromarray(photo).resize(
            (round(photo.shape[1] * scale), height), Image.Resampling.LANCZOS
        )
    )
    assert wide.shape[1] >= width + shift * frames, "the photograph is too narrow for this pan"
    return np.stack([wide[:, shift * i : shift * i + width] for i in range(frames)])


def nuclei_stack() -> np.ndarray:
    """stardist's bundled 3-D test image (z, y, x) uint16, read without importing stardist (which
    would import its TensorFlow-based models)."""
    import tifffile

    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the nuclei case reads the z-stack that the stardist package bundles: "
            "pip install stardist (or run with --case pan)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "img3d.tif"
    return tifffile.imread(path)


def flicker(results: np.ndarray, shift: int) -> float:
    """Mean absolute difference of consecutive frames over their overlap, shift undone."""
    # frame i's column x shows what frame i-1 showed at column x + shift
    width = results.shape[2]
    diffs = [
        np.abs(results[i][:, : width - shift] - results[i - 1][:, shift:]).mean()
        for i in range(1, len(results))
    ]
    return float(np.mean(diffs))


def measure(
    content: np.ndarray,
    style: np.ndarray,
    judge: Judge,
    settings: dict,
    shift: int,
    stack_options: dict,
) -> dict:
    """{mode: (flicker, style score, seconds)} of one method in stack and independent mode."""
    import dask.array as da

    import napari_nst
    from napari_nst.engine.stack import stack_window

    window = stack_window(da.from_array(content), content.ndim == 4)
    rows = {}
    for mode in ("stack", "independent"):
        start = time.perf_counter()
        if mode == "stack":
            results = np.asarray(
                napari_nst.stylize_stack(content, style, **stack_options, **settings)
            )
        else:
            results = np.stack(
                [
                    napari_nst.stylize(plane, style, content_window=window, **settings)
                    for plane in content
                ]
            )
        seconds = time.perf_counter() - start
        rows[mode] = (
            flicker(results, shift),
            statistics.mean(judge.style(r) for r in results),
            seconds,
            results,
        )
    return rows


def report(title: str, rows: dict, reference: str = "") -> None:
    print(f"\n{title}\n")
    if reference:
        print(reference + "\n")
    print("| method | mode | flicker | vs independent | style | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, mode), (value, style_score, seconds, _) in rows.items():
        ratio = value / rows[(name, "independent")][0]
        print(
            f"| {name} | {mode} | {value:.4f} | {ratio:.2f}x | {style_score:.4f} | {seconds:.1f} |"
        )
    print("\n| target (issue 14) | met | figures |\n|---|---|---|")
    for name in dict.fromkeys(name for name, _ in rows):
        stack, alone = rows[(name, "stack")], rows[(name, "independent")]
        print(
            f"| {name}: flicker <= 0.5x independent | {'yes' if stack[0] <= 0.5 * alone[0] else 'NO'} "
            f"| {stack[0] / alone[0]:.3f}x |"
        )
        print(
            f"| {name}: style within 0.01 of independent | "
            f"{'yes' if abs(stack[1] - alone[1]) <= 0.01 else 'NO'} | {stack[1]:.4f} vs {alone[1]:.4f} |"
        )


def montage(path: str, rows: dict, frames: int = 4) -> None:
    """The first ``frames`` results of every row side by side, one row per method and mode."""
    from PIL import Image

    lines = []
    for _, _, _, results in rows.values():
        line = np.concatenate([np.asarray(r)[..., :3] for r in results[:frames]], axis=1)
        lines.append(line)
    image = np.concatenate(lines, axis=0)
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--case", choices=("pan", "nuclei", "both"), default="both")
    parser.add_argument("--frames", type=int, default=8, help="frames of the pan")
    parser.add_argument("--side", type=int, default=128, help="working size (px)")
    parser.add_argument("--shift", type=int, default=2, help="pan: px per frame")
    parser.add_argument("--planes", type=int, default=12, help="nuclei: planes from the middle")
    parser.add_argument(
        "--optimize-weight",
        type=float,
        default=None,
        help="temporal_weight of optimize's stack mode (default: the engine's)",
    )
    parser.add_argument(
        "--predict-weight",
        type=float,
        default=None,
        help="temporal_weight of predict's stack mode (default: the engine's)",
    )
    parser.add_argument(
        "--no-warm-start",
        action="store_true",
        help="optimize's stack mode starts each plane from its content",
    )
    parser.add_argument("--motion", default="flow")
    parser.add_argument(
        "--min-working-size",
        type=int,
        default=None,
        help="optimize's working floor (default: the engine's, 512: 128 px "
        "planes are optimised at 512 px and shrunk)",
    )
    parser.add_argument("--montage", help="write the results' first frames to this PNG prefix")
    args = parser.parse_args(argv)
    side, steps = (64, 6) if args.smoke else (args.side, None)
    frames = 3 if args.smoke else args.frames
    floor = args.min_working_size or (side if args.smoke else None)  # smoke: no 512 px floor
    style = load_rgb("starry_night.jpg")
    common = dict(device="cpu", size=side)
    methods = {
        "optimize": (
            dict(
                common,
                network="vgg19-distilled",
                **({"min_working_size": floor} if floor else {}),
                **({"steps": steps} if steps else {}),
            ),
            dict(
                temporal_weight=args.optimize_weight,
                warm_start=not args.no_warm_start,
                motion=args.motion,
            ),
        ),
        "predict": (
            dict(common, method="predict"),
            dict(temporal_weight=args.predict_weight, motion=args.motion),
        ),
    }
    cases = {}
    if args.case in ("pan", "both"):
        content = pan(load_rgb("golden_gate.jpg"), frames, side, args.shift)
        cases["pan"] = (
            content,
            args.shift,
            f"{frames} frames of {side}x{side} px from golden_gate.jpg, {args.shift} px "
            "per frame; style: starry_night.jpg",
        )
    if args.case in ("nuclei", "both"):
        stack = nuclei_stack()
        planes = 3 if args.smoke else args.planes
        first = (stack.shape[0] - planes) // 2
        content = stack[first : first + planes]
        cases["nuclei"] = (
            content,
            0,
            f"nuclei z-stack (stardist img3d.tif) planes {first}..{first + planes - 1} "
            f"of {stack.shape[0]}, {content.shape[1]}x{content.shape[2]} uint16 at "
            f"{side} px; style: starry_night.jpg",
        )
    every = {}
    for case, (content, shift, title) in cases.items():
        first_plane = content[0]
        judge = Judge(
            first_plane
            if first_plane.ndim == 3
            else np.repeat(
                ((first_plane - content.min()) / max(1, np.ptp(content)) * 255).astype(np.uint8)[
                    ..., None
                ],
                3,
                axis=2,
            ),
            style,
        )
        rows = {}
        for name, (settings, stack_options) in methods.items():
            for mode, row in measure(content, style, judge, settings, shift, stack_options).items():
                rows[(name, mode)] = row
        reference = ""
        if case == "nuclei":
            unit = (content.astype(np.float32) - content.min()) / np.ptp(content)
            reference = (
                f"the content's own difference between consecutive planes (window "
                f"units): {flicker(unit, 0):.4f}"
            )
        report(title, rows, reference)
        if args.montage:
            montage(f"{args.montage}-{case}.png", rows)
        every[case] = rows
    return every


if __name__ == "__main__":
    main()
