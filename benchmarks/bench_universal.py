"""Universal style transfer: speed against a plain implementation in the same process, peak
memory of a large image at full size, and quality next to optimize and predict on the shared
pairs (with the three methods' montage for the README).

    python benchmarks/bench_universal.py --speed             # 256 / 512 / 1024 px, plain ratio
    python benchmarks/bench_universal.py --large 4096        # fresh processes, peak RSS
    python benchmarks/bench_universal.py --quality           # 4 pairs x 3 methods (~3 min)
    python benchmarks/bench_universal.py --smoke             # tiny sizes: keeps it working

Speed: the median of 3 warm runs of ``stylize`` (the style target included) on 2 threads, and the
same for ``plain_wct.plain_universal``. Large: each case in a fresh process that has run once on
a small image (libraries and weights loaded), then the peak resident set over the baseline
divided by the input's bytes (1.0: nothing but the input). Quality: ``quality.Judge`` (SSIM of
the luma at 128 px; two style judges: the cosine of Magenta style embeddings, higher = closer,
which favours predict, conditioned on that embedding; the Gram distance on the distilled
VGG-19, lower = closer, which favours optimize, which minimises it), the same scores as
bench_quality.py; optimize at its defaults (20 steps from predict's result) and from the
content (the previous defaults: 300 coarse-to-fine steps, 512 px floor).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from quality import HERE, Judge, LoadLog, load_rgb, resized

PAIRS = (
    ("tubingen.jpg", "starry_night.jpg"),
    ("tubingen.jpg", "woman-with-hat-matisse.jpg"),
    ("golden_gate.jpg", "the_scream.jpg"),
    ("golden_gate.jpg", "starry_night.jpg"),
)
DOCS = HERE.parent / "docs"


def _median_seconds(run, repeats: int) -> float:
    run()  # warm: weights loaded, kernels chosen
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(sizes, repeats: int) -> list[dict]:
    from plain_wct import plain_universal

    import napari_nst

    content, style = load_rgb("tubingen.jpg"), load_rgb("starry_night.jpg")
    rows = []
    for size in sizes:
        ours = _median_seconds(
            lambda: napari_nst.stylize(content, style, method="universal", size=size, device="cpu"),
            repeats,
        )
        shape = napari_nst.engine.images.working_shape(*content.shape[:2], size)
        c, s = (
            resized(content, shape),
            resized(style, napari_nst.engine.images.working_shape(*style.shape[:2], size)),
        )
        plain = _median_seconds(lambda: plain_universal(c, s), repeats)
        rows.append(
            {
                "size": size,
                "shape": list(shape),
                "seconds": ours,
                "plain": plain,
                "ratio": ours / plain,
            }
        )
    print("\n| size | working shape | universal (s) | plain (s) | ratio |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['shape'][0]}x{r['shape'][1]} | {r['seconds']:.2f} | "
            f"{r['plain']:.2f} | {r['ratio']:.2f}x |"
        )
    return rows


def child(side: int, output_range: str) -> dict:
    """One large case in this fresh process."""
    from memory import proc_status

    import napari_nst

    style = load_rgb("starry_night.jpg")
    content = np.tile(load_rgb("tubingen.jpg"), (1 + side // 768, 1 + side // 1024, 1))[
        :side, :side
    ]
    napari_nst.stylize(content[:64, :64], style, method="universal", size=64)  # warm
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    baseline = proc_status("VmRSS")
    data = np.ascontiguousarray(content)
    start = time.perf_counter()
    result = napari_nst.stylize(
        data, style, method="universal", size=side, output_range=output_range
    )
    seconds = time.perf_counter() - start
    peak = proc_status("VmHWM")
    return {
        "side": side,
        "output_range": output_range,
        "seconds": seconds,
        "ratio": (peak - baseline) / data.nbytes,
        "input_mb": data.nbytes / 2**20,
        "result": f"{result.dtype} {'memory map' if isinstance(result, np.memmap) else 'array'}",
    }


def large(side: int) -> list[dict]:
    rows = []
    for output_range in ("content", "unit"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(side), output_range],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("\n| image | result | seconds | peak over the input |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['side']}² RGB uint8 ({r['input_mb']:.0f} MB) | {r['result']} | "
            f"{r['seconds']:.1f} | {r['ratio']:.2f}x |"
        )
    return rows


def quality(
    size: int,
    steps: int | None,
    pairs=PAIRS,
    montage: Path | None = None,
    load: LoadLog | None = None,
) -> dict:
    """Every method on every pair, scored; ``load`` samples the machine's load after each run."""
    import napari_nst

    methods = {
        "optimize": dict(method="optimize", network="vgg19-distilled"),
        "optimize from the content (previous defaults)": dict(
            method="optimize",
            network="vgg19-distilled",
            init="content",
            coarse_to_fine=True,
            steps=300,
            min_working_size=512,
        ),
        "predict": dict(method="predict"),
        "universal": dict(method="universal"),
        "universal α 0.6": dict(method="universal", style_strength=0.6),
        "universal α 0.3": dict(method="universal", style_strength=0.3),
        "universal levels 3,2,1": dict(method="universal", levels=(3, 2, 1)),
    }
    if steps is not None:
        for name in ("optimize", "optimize from the content (previous defaults)"):
            methods[name]["steps"] = steps
        methods["optimize from the content (previous defaults)"]["min_working_size"] = size
    scores = {name: {"ssim": [], "style": [], "gram": [], "seconds": []} for name in methods}
    load = LoadLog() if load is None else load
    strips = []
    for content_name, style_name in pairs:
        content, style = load_rgb(content_name), load_rgb(style_name)
        judge = Judge(content, style)
        images = []
        for name, settings in methods.items():
            start = time.perf_counter()
            result = napari_nst.stylize(content, style, size=size, device="cpu", **settings)
            scores[name]["seconds"].append(time.perf_counter() - start)
            load.sample()
            for key, value in zip(("ssim", "style", "gram"), judge.all_scores(result)):
                scores[name][key].append(value)
            if name in ("optimize", "predict", "universal"):
                images.append(result)
        strips.append([content, style, *images])
    print(f"\nquality at {size} px, {len(pairs)} pairs (mean; per pair in the JSON)\n")
    print(
        "| method | content kept (SSIM) | style: Magenta cosine (higher = closer; favours "
        "predict) | style: VGG Gram distance (lower = closer; favours optimize) | seconds |\n"
        "|---|---|---|---|---|"
    )
    for name, s in scores.items():
        print(
            f"| {name} | {np.mean(s['ssim']):.3f} | {np.mean(s['style']):.3f} | "
            f"{np.mean(s['gram']):.3f} | {np.mean(s['seconds']):.2f} |"
        )
    main = ("optimize", "optimize from the content (previous defaults)", "predict", "universal")
    print("\nThe methods (their default settings) ranked by each judge, closest first:\n")
    for judge, key, sign in (("Magenta cosine", "style", -1), ("VGG Gram distance", "gram", 1)):
        ranked = sorted(main, key=lambda n: sign * np.mean(scores[n][key]))
        print(f"- {judge}: " + "; ".join(f"{n} {np.mean(scores[n][key]):.4f}" for n in ranked))
    print(f"\n{load.line()}")
    if montage is not None:
        save_montage(strips, montage)
    return scores


def save_montage(strips, path: Path, cell: tuple[int, int] = (230, 300)) -> None:
    """content | style | optimize | predict | universal, one pair a row, each image fitted into
    a cell of the same size under its column's title."""
    from PIL import Image, ImageDraw

    titles = ("content", "style", "optimize", "predict", "universal")
    gap, head = 6, 24
    height, width = cell
    sheet = Image.new(
        "RGB",
        (len(titles) * (width + gap) - gap, head + len(strips) * (height + gap) - gap),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(titles):
        draw.text((column * (width + gap) + 4, 6), title, fill="black")
    for row, strip in enumerate(strips):
        for column, image in enumerate(strip):
            image = np.asarray(image, np.float32)
            image = image / 255 if image.max() > 1.5 else image
            h, w = image.shape[:2]
            scale = min(height / h, width / w)
            shape = (round(h * scale), round(w * scale))
            tile = Image.fromarray((resized(image, shape) * 255).round().astype(np.uint8))
            sheet.paste(
                tile,
                (
                    column * (width + gap) + (width - shape[1]) // 2,
                    head + row * (height + gap) + (height - shape[0]) // 2,
                ),
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=85)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--large", type=int, metavar="N")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "universal.json")
    parser.add_argument("--child", nargs=2, metavar=("N", "RANGE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return {}
    import torch

    torch.set_num_threads(2)
    report = {}
    if args.smoke:
        report["speed"] = speed((64,), 1)
        report["large"] = large(128)
        report["quality"] = quality(64, steps=2, pairs=PAIRS[:1])
    if args.speed:
        report["speed"] = speed((256, 512, 1024), 3)
    if args.large:
        report["large"] = large(args.large)
    if args.quality:
        load = LoadLog()
        report["quality"] = quality(512, None, montage=DOCS / "methods_montage.jpg", load=load)
        report["quality_load"] = load.samples
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
