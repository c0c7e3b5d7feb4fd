"""Regions against a plain run, per method: seconds, and what each region looks like.

    python benchmarks/bench_regions.py              # 512 px, every method (~1 min on 2 cores)
    python benchmarks/bench_regions.py --smoke      # tiny sizes: keeps it working

The Tübingen photograph with two bands of labels: 1 (the top 40 %: sky and roofs) gets The
Starry Night, 2 (the bottom 30 %: the river) The Scream, the houses between are kept. For each
method (optimize at its defaults: 20 L-BFGS steps from predict's result, distilled VGG-19):
the seconds of a plain run with one style and of the regions run (median of 3 runs after a warm
one), the two style scores of each band (``quality.Judge``, on the band away from its edges:
the cosine of Magenta style embeddings, higher = closer, which favours predict; the Gram
distance on the distilled VGG-19, lower = closer, which favours optimize) next to the same band
of a plain run with that band's style, and the largest difference from the content in the kept
band (away from the soft edge). Writes ``docs/regions_montage.jpg``: the content with the labels over
it, then each method's result.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
from quality import HERE, Judge, LoadLog, load_rgb, smoke_arguments

DOCS = HERE.parent / "docs"
TOP, BOTTOM = 0.40, 0.70  # label 1 above TOP, label 2 below BOTTOM (fractions of the height)


def band_labels(height: int, width: int) -> np.ndarray:
    labels = np.zeros((height, width), np.uint8)
    labels[: round(height * TOP)] = 1
    labels[round(height * BOTTOM) :] = 2
    return labels


def _bands(height: int) -> dict:
    """Rows of each band away from the soft edges."""
    margin = max(8, height // 32)  # beyond the soft edge (3 sigma)
    return {
        "styled 1": slice(0, round(height * TOP) - margin),
        "styled 2": slice(round(height * BOTTOM) + margin, height),
        "kept": slice(round(height * TOP) + margin, round(height * BOTTOM) - margin),
    }


def _timed(run, repeats: int, warm: bool = True):
    """(the result, the median seconds of ``repeats`` runs, after a warm one if ``warm``)."""
    if warm:
        run()  # weights loaded, kernels chosen
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main() -> None:
    args = smoke_arguments(__doc__)
    import napari_nst

    size = 128 if args.smoke else 512
    content = _shrunk(load_rgb("tubingen.jpg"), size)  # the result's size: bands compare
    starry, scream = load_rgb("starry_night.jpg"), load_rgb("the_scream.jpg")
    height, width = content.shape[:2]
    labels = band_labels(height, width)
    bands = _bands(height)
    judges = {
        "styled 1": Judge(content[bands["styled 1"]], starry),
        "styled 2": Judge(content[bands["styled 2"]], scream),
    }
    per_method = {
        "optimize": dict(
            network="vgg19-distilled",
            **(dict(steps=2, min_working_size=128, min_size=128) if args.smoke else {}),
        ),
        "predict": {},
        "universal": {},
    }
    rows, results = [], {}
    load = LoadLog()
    for method, extra in per_method.items():
        options = dict(method=method, size=size, device="cpu", **extra)
        timing = dict(repeats=1, warm=False) if args.smoke else dict(repeats=3)
        plain_starry, plain_seconds = _timed(
            lambda: napari_nst.stylize(content, starry, **options), **timing
        )
        load.sample()
        plain_scream = napari_nst.stylize(content, scream, **options)
        regioned, seconds = _timed(
            lambda: napari_nst.stylize(content, {1: starry, 2: scream}, regions=labels, **options),
            **timing,
        )
        load.sample()
        results[method] = regioned
        row = {
            "method": method,
            "plain_s": plain_seconds,
            "regions_s": seconds,
            "ratio": seconds / plain_seconds,
            "kept_max_diff": float(
                np.abs(regioned[bands["kept"]] - content[bands["kept"]] / 255.0).max()
            ),
        }
        for band, plain in (("styled 1", plain_starry), ("styled 2", plain_scream)):
            judge = judges[band]
            row[f"{band} style"] = judge.style(regioned[bands[band]])
            row[f"{band} style plain"] = judge.style(plain[bands[band]])
            row[f"{band} gram"] = judge.gram(regioned[bands[band]])
            row[f"{band} gram plain"] = judge.gram(plain[bands[band]])
        rows.append(row)

    print(
        f"Regions at {size} px ({height}x{width}), 2 threads; bands: 1 = The Starry Night, "
        "2 = The Scream, the middle kept\n"
    )
    print(
        "| method | plain run | with regions | cost | band 1 Magenta style (plain) "
        "| band 2 Magenta style (plain) | band 1 Gram distance (plain) "
        "| band 2 Gram distance (plain) | kept band, max diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['plain_s']:.2f} s | {r['regions_s']:.2f} s | "
            f"{r['ratio']:.2f}x | {r['styled 1 style']:.3f} ({r['styled 1 style plain']:.3f}) | "
            f"{r['styled 2 style']:.3f} ({r['styled 2 style plain']:.3f}) | "
            f"{r['styled 1 gram']:.3f} ({r['styled 1 gram plain']:.3f}) | "
            f"{r['styled 2 gram']:.3f} ({r['styled 2 gram plain']:.3f}) | "
            f"{r['kept_max_diff']:.4f} |"
        )
    print(
        f"\nMagenta: higher = closer (favours predict); Gram: lower = closer (favours "
        f"optimize). {load.line()}"
    )
    if not args.smoke:
        _montage(content, labels, results, DOCS / "regions_montage.jpg")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size, "rows": rows, "load": load.samples}, f, indent=1)


def _shrunk(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _montage(content, labels, results: dict, path) -> None:
    """The content with the labels tinted over it, then each method's result, in a row."""
    from PIL import Image

    tint = np.array([[0, 0, 0], [60, 90, 255], [255, 120, 40]], np.float32)[labels]
    overlay = np.where(labels[..., None] > 0, 0.55 * content + 0.45 * tint, content)
    gap = np.full((content.shape[0], 8, 3), 255, np.uint8)
    tiles = [overlay.astype(np.uint8)]
    for image in results.values():
        tiles += [gap, (np.clip(image[..., :3], 0, 1) * 255).astype(np.uint8)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, axis=1)).save(path, quality=88)
    print(f"\nwrote {path} (labels, then {', '.join(results)})")


if __name__ == "__main__":
    main()
