"""Flicker of whole-stack runs against independent per-plane runs (issue 14), printed as a table.

A pan cut from a shared photograph: frame i is the window of the photograph that starts
``shift * i`` pixels further right, so after undoing that shift two consecutive contents are
equal and any difference between consecutive results is flicker. Flicker = mean absolute
difference of consecutive result frames over their overlap, after undoing the shift. Style =
the quality benchmark's style score (cosine of Magenta style embeddings), mean over frames.

    python benchmarks/bench_flicker.py            # 8 frames of 128 px, 2 px per frame
    python benchmarks/bench_flicker.py --smoke    # 3 frames of 64 px, few steps

Rows: stack mode (``stylize_stack``: one style target, one window; optimize also starts each
frame from the previous result with the motion undone) and independent runs (``stylize`` per
frame), for optimize (distilled VGG-19) and predict.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from quality import Judge, load_rgb


def pan(photo: np.ndarray, frames: int, side: int, shift: int) -> np.ndarray:
    """``frames`` windows of ``side`` x ``side`` pixels, each ``shift`` px further right."""
    from PIL import Image

    height = side
    width = side
    scale = height / photo.shape[0]
    wide = np.asarray(Image.fromarray(photo).resize(
        (round(photo.shape[1] * scale), height), Image.Resampling.LANCZOS))
    assert wide.shape[1] >= width + shift * frames, "the photograph is too narrow for this pan"
    return np.stack([wide[:, shift * i:shift * i + width] for i in range(frames)])


def flicker(results: np.ndarray, shift: int) -> float:
    """Mean absolute difference of consecutive frames over their overlap, shift undone."""
    # frame i's column x shows what frame i-1 showed at column x + shift
    diffs = [np.abs(results[i][:, :-shift] - results[i - 1][:, shift:]).mean()
             for i in range(1, len(results))]
    return float(np.mean(diffs))


def main(argv=None) -> dict:
    import napari_nst

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--shift", type=int, default=2)
    args = parser.parse_args(argv)
    frames, side, steps = (3, 64, 6) if args.smoke else (args.frames, args.side, None)
    content = pan(load_rgb("golden_gate.jpg"), frames, side, args.shift)
    style = load_rgb("starry_night.jpg")
    judge = Judge(content[0], style)
    size = max(content.shape[1:3])
    common = dict(device="cpu", size=size)
    methods = {"optimize": dict(common, network="vgg19-distilled", **({"steps": steps} if steps else {})),
               "predict": dict(common, method="predict")}
    rows = {}
    for name, settings in methods.items():
        for mode in ("stack", "independent"):
            start = time.perf_counter()
            if mode == "stack":
                results = np.asarray(napari_nst.stylize_stack(content, style, **settings))
            else:
                results = np.stack([napari_nst.stylize(frame, style, **settings) for frame in content])
            seconds = time.perf_counter() - start
            rows[(name, mode)] = (flicker(results, args.shift),
                                  statistics.mean(judge.style(r) for r in results), seconds)
    print(f"\n{frames} frames of {content.shape[1]}x{content.shape[2]} px from golden_gate.jpg, "
          f"{args.shift} px per frame; style: starry_night.jpg\n")
    print("| method | mode | flicker | vs independent | style | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, mode), (value, style_score, seconds) in rows.items():
        ratio = value / rows[(name, "independent")][0]
        print(f"| {name} | {mode} | {value:.4f} | {ratio:.2f}x | {style_score:.3f} | {seconds:.1f} |")
    print("\n| target (issue 14) | met | figures |\n|---|---|---|")
    for name in methods:
        stack, alone = rows[(name, "stack")], rows[(name, "independent")]
        print(f"| {name}: flicker <= 0.5x independent | {'yes' if stack[0] <= 0.5 * alone[0] else 'NO'} "
              f"| {stack[0] / alone[0]:.2f}x |")
        print(f"| {name}: style within 0.01 of independent | "
              f"{'yes' if abs(stack[1] - alone[1]) <= 0.01 else 'NO'} | {stack[1]:.3f} vs {alone[1]:.3f} |")
    return rows


if __name__ == "__main__":
    main()
