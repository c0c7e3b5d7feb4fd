"""Quality of the optimize method on real, learned features (the distilled VGG-19), next to
predict and the content itself. Prints markdown tables, checks the targets, writes JSON and
montages (content | style | predict | optimize, and a style_strength strip per pair).

    python benchmarks/bench_quality.py             # full run (about 40 min on 2 cores)
    python benchmarks/bench_quality.py --smoke     # one pair, tiny sizes, few steps: keeps it working

Scores (see ``quality.py``): content preservation = SSIM of the luminance at 128 px against the
content; style match = cosine similarity of Magenta style embeddings of result and style image.
Every optimize row uses ``network="vgg19-distilled"`` and the default settings except what the
row changes; the plain reference is ``plain_reference.py`` (the PyTorch tutorial's structure,
the same objective, 300 L-BFGS steps at full size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quality import DISTILLED_FILE, HERE, SHARED_IMAGES, Judge, load_rgb, resized

PAIRS = (("tubingen.jpg", "starry_night.jpg"), ("tubingen.jpg", "woman-with-hat-matisse.jpg"),
         ("golden_gate.jpg", "the_scream.jpg"), ("golden_gate.jpg", "starry_night.jpg"))
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
CONTENT_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class Row:
    name: str
    group: str
    kind: str = "optimize"             # optimize | predict | content | plain
    overrides: tuple = ()              # settings changed from the defaults (besides size)
    size: int = 512
    curve: bool = False                # report the scores of every emitted iterate

    @property
    def key(self):
        """What decides the run: rows with the same key (style_strength 1, content_weight x1
        and the defaults) run once per pair."""
        from napari_nst import Settings

        defaults = Settings()
        changed = tuple((k, v) for k, v in self.overrides if getattr(defaults, k) != v)
        return (self.kind, self.size, changed)


@dataclass
class Outcome:
    ssim: list = field(default_factory=list)
    style: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    curves: list = field(default_factory=list)   # per pair: [(step, elapsed, ssim, style), ...]


def make_rows(size: int, sizes: tuple, steps: int | None, floor: int | None = None) -> list[Row]:
    """The rows; ``steps`` and ``floor`` (``min_working_size``) replace the defaults' when given
    (the smoke run's tiny sizes stand for 256 ... 1024 px)."""
    from napari_nst import Settings

    defaults = Settings()
    base = (("steps", steps),) if steps else ()
    base += (("min_working_size", floor),) if floor else ()
    rows = [Row("content itself", "reference", "content", size=size),
            Row("predict", "reference", "predict", size=size)]
    rows += [Row(f"defaults, {s} px", "size", overrides=base, size=s, curve=s == size) for s in sizes]
    rows += [Row(f"style_strength {v:g}", "style_strength", overrides=base + (("style_strength", v),),
                 size=size) for v in STRENGTHS]
    rows += [Row(f"content_weight x{f:g}", "content_weight",
                 overrides=base + (("content_weight", defaults.content_weight * f),), size=size)
             for f in CONTENT_FACTORS]
    rows += [Row("coarse_to_fine off", "coarse_to_fine",
                 overrides=base + (("coarse_to_fine", False),), size=size, curve=True),
             Row(f"plain reference, {steps or defaults.steps} L-BFGS steps", "reference", "plain",
                 overrides=base, size=size)]
    return rows


def _settings(row: Row, emit_every: int):
    from napari_nst import Settings

    return Settings(network="vgg19-distilled", device="cpu", size=row.size,
                    emit_every=emit_every, **dict(row.overrides))


def run_row(row: Row, content: np.ndarray, style: np.ndarray, judge: Judge, emit_every: int):
    """(final image, seconds, curve) for one row on one pair."""
    import napari_nst

    if row.kind == "content":
        return content, 0.0, []
    settings = _settings(row, emit_every)
    start = time.perf_counter()
    if row.kind == "predict":
        image = napari_nst.stylize(content, style, settings, method="predict")
        return image, time.perf_counter() - start, []
    if row.kind == "plain":
        return _run_plain(settings, content, style)
    images = [(it.step, it.elapsed, it.image) for it in napari_nst.iterate(content, style, settings)]
    seconds = time.perf_counter() - start
    curve = [(step, elapsed, *judge.scores(image)) for step, elapsed, image in images]
    return images[-1][2], seconds, curve


def _run_plain(settings, content: np.ndarray, style: np.ndarray):
    import plain_reference
    import torch

    from napari_nst.engine.images import prepare_image, working_shape
    from napari_nst.engine.methods.optimize.gatys import to_image, to_tensor
    from napari_nst.engine.vgg import load_features

    features, _ = load_features("vgg19-distilled", DISTILLED_FILE)
    c, s = prepare_image(content).rgb, prepare_image(style).rgb
    cpu = torch.device("cpu")
    content_t = to_tensor(c, working_shape(*c.shape[:2], settings.size), cpu).contiguous()
    style_t = to_tensor(s, working_shape(*s.shape[:2], settings.size), cpu).contiguous()
    start = time.perf_counter()
    result = plain_reference.run_style_transfer(
        features, content_t, style_t, content_t.clone(), num_steps=settings.steps,
        content_weight=settings.content_weight, style_weight=settings.style_weight,
        tv_weight=settings.tv_weight)
    return to_image(result), time.perf_counter() - start, []


# ----------------------------------------------------------------------------------- montages

def _tile(rgb: np.ndarray, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return resized(rgb, (height, max(1, round(w * height / h))))


def save_strip(images: list[np.ndarray], path: Path, height: int = 256) -> None:
    from PIL import Image

    gap = np.ones((height, 6, 3), dtype=np.float32)
    tiles = [part for image in images for part in (_tile(image, height), gap)][:-1]
    Image.fromarray((np.concatenate(tiles, axis=1) * 255).round().astype(np.uint8)).save(path)


def stack_strips(paths: list[Path], path: Path, width: int = 1400) -> None:
    """The per-pair montages one above the other, each scaled to ``width`` (the README's figure)."""
    from PIL import Image

    strips = []
    for strip in paths:
        with Image.open(strip) as image:
            height = round(image.height * width / image.width)
            strips.append(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
    sheet = Image.new("RGB", (width, sum(s.height for s in strips) + 6 * (len(strips) - 1)), "white")
    top = 0
    for strip in strips:
        sheet.paste(strip, (0, top))
        top += strip.height + 6
    sheet.save(path, quality=88)


# ----------------------------------------------------------------------------------- report

def _fmt(values: list, digits: int = 3) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def check_targets(results: dict, size: int, sizes: tuple) -> list[tuple[str, bool, str]]:
    """The targets of the optimize-quality issue, each as (target, met, figures)."""
    def mean(name, score):
        return statistics.mean(results[name][score])

    checks = []
    defaults = f"defaults, {size} px"
    ssim, style, predict = mean(defaults, "ssim"), mean(defaults, "style"), mean("predict", "style")
    checks.append(("defaults: mean SSIM >= 0.60", ssim >= 0.60, f"{ssim:.3f}"))
    checks.append(("defaults: style >= predict's - 0.005", style >= predict - 0.005,
                   f"{style:.3f} vs {predict:.3f} - 0.005"))
    names = [f"style_strength {v:g}" for v in STRENGTHS]
    ssims, styles = [mean(n, "ssim") for n in names], [mean(n, "style") for n in names]
    checks.append(("style_strength 0 -> 1: SSIM falls at every step",
                   all(a > b for a, b in zip(ssims, ssims[1:])), " > ".join(f"{v:.3f}" for v in ssims)))
    checks.append(("style_strength 0 -> 1: style rises at every step",
                   all(a < b for a, b in zip(styles, styles[1:])), " < ".join(f"{v:.3f}" for v in styles)))
    checks.append(("style_strength 0 returns the content (SSIM >= 0.95)", ssims[0] >= 0.95,
                   f"{ssims[0]:.3f}"))
    names = [f"content_weight x{f:g}" for f in CONTENT_FACTORS]
    ssims = [mean(n, "ssim") for n in names]
    checks.append(("content_weight x0.1 -> x10: SSIM rises at every step",
                   all(a < b for a, b in zip(ssims, ssims[1:])), " < ".join(f"{v:.3f}" for v in ssims)))
    names = [f"defaults, {s} px" for s in sizes]
    styles, ssims = [mean(n, "style") for n in names], [mean(n, "ssim") for n in names]
    checks.append((f"sizes {'/'.join(map(str, sizes))}: style within 0.01",
                   max(styles) - min(styles) <= 0.01, f"spread {max(styles) - min(styles):.3f}"))
    checks.append((f"sizes {'/'.join(map(str, sizes))}: SSIM within 0.08",
                   max(ssims) - min(ssims) <= 0.08, f"spread {max(ssims) - min(ssims):.3f}"))
    return checks


def print_report(rows: list[Row], results: dict, pairs, checks, curves: dict) -> None:
    print(f"\nPairs: {', '.join(f'{c} x {s}' for c, s in pairs)}. Mean over the pairs (min–max).\n")
    print("| row | size | seconds | SSIM to content | style score |")
    print("|---|---:|---:|---|---|")
    for row in rows:
        out = results[row.name]
        seconds = f"{statistics.mean(out['seconds']):.1f}" if row.kind != "content" else "-"
        print(f"| {row.name} | {row.size} | {seconds} | {_fmt(out['ssim'])} | {_fmt(out['style'])} |")
    for name, per_pair in curves.items():
        print(f"\nTime to quality, {name} (mean over pairs, scored at every emitted iterate):\n")
        print("| step | seconds | SSIM | style |")
        print("|---:|---:|---:|---:|")
        for points in zip(*per_pair):
            step = points[0][0]
            print(f"| {step} | {statistics.mean(p[1] for p in points):.1f} "
                  f"| {statistics.mean(p[2] for p in points):.3f} "
                  f"| {statistics.mean(p[3] for p in points):.3f} |")
    print("\n| target | met | figures |")
    print("|---|---|---|")
    for target, met, figures in checks:
        print(f"| {target} | {'yes' if met else 'NO'} | {figures} |")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one pair, tiny sizes, 6 steps")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "quality",
                        help="directory for the montages")
    parser.add_argument("--json", type=Path, default=HERE / "quality_results.json")
    args = parser.parse_args(argv)
    if not DISTILLED_FILE.is_file() or not SHARED_IMAGES.is_dir():
        raise SystemExit(f"needs ../shared beside the repository ({DISTILLED_FILE})")

    if args.smoke:
        pairs, size, sizes, steps, floor, emit_every = PAIRS[:1], 96, (64, 96, 128), 6, 96, 2
    else:
        pairs, size, sizes, steps, floor, emit_every = PAIRS, 512, (256, 512, 1024), None, None, 25
    rows = make_rows(size, sizes, steps, floor)
    args.out.mkdir(parents=True, exist_ok=True)

    runs: dict = {}       # rows that share settings (strength 1 = the defaults) run once
    outcomes = {row.name: Outcome() for row in rows}
    montages = []
    for content_name, style_name in pairs:
        content, style = load_rgb(content_name), load_rgb(style_name)
        judge = Judge(content, style)
        finals = {}
        for row in rows:
            key = (content_name, style_name, row.key)
            if key not in runs:
                runs[key] = run_row(row, content, style, judge, emit_every)
            image, seconds, curve = runs[key]
            finals[row.name] = image
            out = outcomes[row.name]
            out.ssim.append(judge.ssim(image))
            out.style.append(judge.style(image))
            out.seconds.append(seconds)
            if row.curve:
                out.curves.append(curve)
            print(f"{content_name} x {style_name} | {row.name}: SSIM {out.ssim[-1]:.3f} "
                  f"style {out.style[-1]:.3f} {seconds:.1f} s", flush=True)
        stem = f"{Path(content_name).stem}_x_{Path(style_name).stem}"
        save_strip([content, style, finals["predict"], finals[f"defaults, {size} px"]],
                   args.out / f"{stem}.png")
        save_strip([finals[f"style_strength {v:g}"] for v in STRENGTHS],
                   args.out / f"{stem}_strength.png")
        montages.append(args.out / f"{stem}.png")
    stack_strips(montages, args.out / "overview.jpg")

    results = {row.name: {"ssim": outcomes[row.name].ssim, "style": outcomes[row.name].style,
                          "seconds": outcomes[row.name].seconds, "size": row.size,
                          "settings": dict(row.overrides)} for row in rows}
    curves = {row.name: outcomes[row.name].curves for row in rows if row.curve}
    checks = check_targets(results, size, sizes)
    print_report(rows, results, pairs, checks, curves)
    report = {"pairs": [list(p) for p in pairs], "rows": results, "curves": curves,
              "targets": [{"target": t, "met": m, "figures": f} for t, m, f in checks],
              "smoke": args.smoke}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nmontages in {args.out}; JSON in {args.json}")
    return report


if __name__ == "__main__":
    main()
