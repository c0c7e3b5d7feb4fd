"""Quality of the optimize method on real, learned features (the distilled VGG-19) at its
defaults (predict's result finished in 20 L-BFGS steps at full size) and with one change per
row, next to predict, the content itself and the plain implementation. Prints markdown tables,
checks the targets, writes JSON and montages (content | style | predict | optimize, and a
style_strength strip per pair).

    python benchmarks/bench_quality.py                         # the four pairs in one process
    python benchmarks/bench_quality.py --pairs 0 --json q0.json  # one pair (0-3) of them
    python benchmarks/bench_quality.py --merge q0.json q1.json q2.json q3.json \
        --json benchmarks/quality_results.json --montage docs/quality_montage.jpg
                                                   # the tables of runs made pair by pair
    python benchmarks/bench_quality.py --pairs 0 --groups reference,size --json q0a.json
                                                   # some row groups only (a part for --merge)
    python benchmarks/bench_quality.py --smoke                 # one pair, tiny sizes: keeps it working

Scores (see ``quality.py``): content preservation = SSIM of the luminance at 128 px against the
content; two style judges: the cosine similarity of Magenta style embeddings of result and style
image (higher = closer; predict is conditioned on that embedding, so it favours predict) and the
Gram-matrix distance on the distilled VGG-19's conv1_1 ... conv5_1 (lower = closer; what optimize
minimises, so it favours optimize). Every optimize row uses ``network="vgg19-distilled"`` and the
default settings except what the row changes; the plain reference is ``plain_reference.py`` (the
PyTorch tutorial's structure, the same objective, float32) run the default's steps from the same
start, predict's result (its seconds include the predict pass, as the default's do).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from quality import DISTILLED_FILE, HERE, SHARED_IMAGES, Judge, LoadLog, load_rgb, resized

PAIRS = (
    ("tubingen.jpg", "starry_night.jpg"),
    ("tubingen.jpg", "woman-with-hat-matisse.jpg"),
    ("golden_gate.jpg", "the_scream.jpg"),
    ("golden_gate.jpg", "starry_night.jpg"),
)
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
CONTENT_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
#: the previous defaults (until issue 29): 300 coarse-to-fine steps from the content, 512 px floor
PREVIOUS = (("init", "content"), ("coarse_to_fine", True), ("steps", 300))


@dataclass(frozen=True)
class Row:
    name: str
    group: str
    kind: str = "optimize"  # optimize | predict | content | style | plain
    overrides: tuple = ()  # settings changed from the defaults (besides size)
    size: int = 512
    curve: bool = False  # report the scores of every emitted iterate

    @property
    def key(self):
        """What decides the run: rows with the same key (style_strength 1, content_weight x1
        and the defaults) run once per pair."""
        from napari_nst import Settings

        defaults = Settings()
        changed = tuple(
            (k, v) for k, v in dict(self.overrides).items() if getattr(defaults, k) != v
        )
        return (self.kind, self.size, changed)


@dataclass
class Outcome:
    ssim: list = field(default_factory=list)
    style: list = field(default_factory=list)
    gram: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    curves: list = field(
        default_factory=list
    )  # per pair: [(step, elapsed, ssim, style, gram), ...]


def make_rows(size: int, sizes: tuple, steps: int | None, floor: int | None = None) -> list[Row]:
    """The rows; ``steps`` and ``floor`` (``min_working_size``) replace the defaults' when given
    (the smoke run's tiny sizes stand for 256 ... 1024 px; its step counts are scaled by
    ``steps`` / the default's)."""
    from napari_nst import Settings

    defaults = Settings()
    scale = steps / defaults.steps if steps else 1.0

    def n(count: int) -> int:
        return max(2, round(count * scale))

    base = (("steps", steps),) if steps else ()
    base += (("min_working_size", floor),) if floor else ()
    small = min(sizes)
    previous = tuple((k, n(v) if k == "steps" else v) for k, v in PREVIOUS)
    rows = [
        Row("content itself", "reference", "content", size=size),
        Row(
            "style itself (resized bilinearly, not bicubically as the judge does)",
            "reference",
            "style",
            size=size,
        ),
        Row("predict", "reference", "predict", size=size),
    ]
    rows += [Row(f"predict, {s} px", "size", "predict", size=s) for s in sizes if s != size]
    rows += [
        Row(f"defaults, {s} px", "size", overrides=base, size=s, curve=s == size) for s in sizes
    ]
    rows += [
        Row(
            f"style_strength {v:g}",
            "style_strength",
            overrides=base + (("style_strength", v),),
            size=size,
        )
        for v in STRENGTHS
    ]
    rows += [
        Row(
            f"content_weight x{f:g}",
            "content_weight",
            overrides=base + (("content_weight", defaults.content_weight * f),),
            size=size,
        )
        for f in CONTENT_FACTORS
    ]
    rows += [
        Row(f"steps {n(k)}", "configuration", overrides=base + (("steps", n(k)),), size=size)
        for k in (10, 30, 40)
    ]
    rows += [
        Row(
            f"steps {n(k)}, {small} px",
            "configuration",
            overrides=base + (("steps", n(k)),),
            size=small,
        )
        for k in (10, 40)
    ]
    rows += [
        Row(
            f"coarse_to_fine on (from {small} px), steps {n(30)}",
            "configuration",
            overrides=base + (("coarse_to_fine", True), ("min_size", small), ("steps", n(30))),
            size=size,
        ),
        Row(
            "init universal", "configuration", overrides=base + (("init", "universal"),), size=size
        ),
        Row(
            f"previous defaults ({n(300)} coarse-to-fine steps from the content, "
            f"{floor or 512} px floor)",
            "configuration",
            overrides=base + previous + (("min_working_size", floor or 512),),
            size=size,
        ),
        Row(
            f"previous defaults, no floor, {small} px",
            "configuration",
            overrides=base + previous + (("min_working_size", 0),),
            size=small,
        ),
        Row(
            f"plain reference, {steps or defaults.steps} L-BFGS steps",
            "reference",
            "plain",
            overrides=base,
            size=size,
        ),
    ]
    return rows


def _settings(row: Row, emit_every: int):
    from napari_nst import Settings

    return Settings(
        network="vgg19-distilled",
        device="cpu",
        size=row.size,
        emit_every=emit_every,
        **dict(row.overrides),
    )


def run_row(row: Row, content: np.ndarray, style: np.ndarray, judge: Judge, emit_every: int):
    """(final image, seconds, curve) for one row on one pair; only a curve row emits every
    ``emit_every`` steps (an emission is an extra forward pass)."""
    import napari_nst

    if row.kind == "content":  # at its own size (the Gram judge compares it there)
        return content, 0.0, []
    if row.kind == "style":  # a calibration of the Gram judge: a resize's difference
        from napari_nst.engine.images import working_shape

        return resized(style, working_shape(*style.shape[:2], row.size)), 0.0, []
    settings = _settings(row, emit_every if row.curve else 100000)
    start = time.perf_counter()
    if row.kind == "predict":
        image = napari_nst.stylize(content, style, settings, method="predict")
        return image, time.perf_counter() - start, []
    if row.kind == "plain":
        return _run_plain(settings, content, style)
    images = [
        (it.step, it.elapsed, it.image) for it in napari_nst.iterate(content, style, settings)
    ]
    seconds = time.perf_counter() - start
    curve = [(step, elapsed, *judge.all_scores(image)) for step, elapsed, image in images]
    return images[-1][2], seconds, curve


def _run_plain(settings, content: np.ndarray, style: np.ndarray):
    """The tutorial's implementation (float32) from the default's start, predict's result; the
    seconds include the predict pass, as the default's do."""
    import plain_reference
    import torch

    import napari_nst
    from napari_nst.engine.images import prepare_image, working_shape
    from napari_nst.engine.tensors import to_image, to_tensor
    from napari_nst.engine.vgg import load_features

    features, _ = load_features("vgg19-distilled", DISTILLED_FILE)
    c, s = prepare_image(content).rgb, prepare_image(style).rgb
    cpu = torch.device("cpu")
    start = time.perf_counter()
    shape = working_shape(*c.shape[:2], settings.size)
    first = napari_nst.stylize(content, style, size=settings.size, device="cpu", method="predict")
    content_t = to_tensor(c, shape, cpu).contiguous()
    style_t = to_tensor(s, working_shape(*s.shape[:2], settings.size), cpu).contiguous()
    result = plain_reference.run_style_transfer(
        features,
        content_t,
        style_t,
        to_tensor(first, shape, cpu).contiguous().clone(),
        num_steps=settings.steps,
        content_weight=settings.content_weight,
        style_weight=settings.style_weight,
        tv_weight=settings.tv_weight,
    )
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
    sheet = Image.new(
        "RGB", (width, sum(s.height for s in strips) + 6 * (len(strips) - 1)), "white"
    )
    top = 0
    for strip in strips:
        sheet.paste(strip, (0, top))
        top += strip.height + 6
    sheet.save(path, quality=88)


# ----------------------------------------------------------------------------------- report


def _fmt(values: list, digits: int = 3) -> str:
    if not values:
        return "-"
    return (
        f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def check_targets(results: dict, size: int, sizes: tuple) -> list[tuple[str, bool, str]]:
    """The targets of the optimize-quality issue, each as (target, met, figures)."""

    def mean(name, score):
        return statistics.mean(results[name][score])

    checks = []
    defaults = f"defaults, {size} px"
    ssim, style, predict = mean(defaults, "ssim"), mean(defaults, "style"), mean("predict", "style")
    checks.append(("defaults: mean SSIM >= 0.60", ssim >= 0.60, f"{ssim:.3f}"))
    checks.append(
        (
            "defaults: Magenta style >= predict's - 0.005",
            style >= predict - 0.005,
            f"{style:.3f} vs {predict:.3f} - 0.005",
        )
    )
    names = [f"style_strength {v:g}" for v in STRENGTHS]
    ssims, styles = [mean(n, "ssim") for n in names], [mean(n, "style") for n in names]
    checks.append(
        (
            "style_strength 0 -> 1: SSIM falls at every step",
            all(a > b for a, b in zip(ssims, ssims[1:])),
            " > ".join(f"{v:.3f}" for v in ssims),
        )
    )
    checks.append(
        (
            "style_strength 0 -> 1: Magenta style rises at every step",
            all(a < b for a, b in zip(styles, styles[1:])),
            " < ".join(f"{v:.3f}" for v in styles),
        )
    )
    checks.append(
        ("style_strength 0 returns the content (SSIM >= 0.95)", ssims[0] >= 0.95, f"{ssims[0]:.3f}")
    )
    names = [f"content_weight x{f:g}" for f in CONTENT_FACTORS]
    ssims = [mean(n, "ssim") for n in names]
    checks.append(
        (
            "content_weight x0.1 -> x10: SSIM rises at every step",
            all(a < b for a, b in zip(ssims, ssims[1:])),
            " < ".join(f"{v:.3f}" for v in ssims),
        )
    )
    names = [f"defaults, {s} px" for s in sizes]
    styles, ssims = [mean(n, "style") for n in names], [mean(n, "ssim") for n in names]
    checks.append(
        (
            f"sizes {'/'.join(map(str, sizes))}: Magenta style within 0.01",
            max(styles) - min(styles) <= 0.01,
            f"spread {max(styles) - min(styles):.3f}",
        )
    )
    checks.append(
        (
            f"sizes {'/'.join(map(str, sizes))}: SSIM within 0.08",
            max(ssims) - min(ssims) <= 0.08,
            f"spread {max(ssims) - min(ssims):.3f}",
        )
    )
    return checks


def verdicts(results: dict) -> list[tuple[str, str, str]]:
    """How each style judge ranks the methods' runs at the benchmark's size: predict, optimize
    at its defaults (from predict's result), optimize from the content (the previous defaults)
    and the plain implementation (from predict's result): (judge, closest row, the ranking with
    the mean scores, closest first)."""

    def mean(name, score):
        return statistics.mean(results[name][score])

    size = results["predict"]["size"]
    names = [
        n
        for n in results
        if n in ("predict", f"defaults, {size} px")
        or n.startswith(("previous defaults (", "plain reference"))
    ]
    style = sorted(names, key=lambda n: -mean(n, "style"))
    gram = sorted(names, key=lambda n: mean(n, "gram"))
    return [
        (
            "Magenta embedding cosine (higher = closer)",
            style[0],
            "; ".join(f"{n} {mean(n, 'style'):.4f}" for n in style),
        ),
        (
            "VGG Gram distance (lower = closer)",
            gram[0],
            "; ".join(f"{n} {mean(n, 'gram'):.4f}" for n in gram),
        ),
    ]


def print_report(rows: list[Row], results: dict, pairs, checks, curves: dict) -> None:
    print(f"\nPairs: {', '.join(f'{c} x {s}' for c, s in pairs)}. Mean over the pairs (min–max).\n")
    print(
        "| row | size | seconds | SSIM to content | style: Magenta cosine (higher = closer; "
        "favours predict) | style: VGG Gram distance (lower = closer; favours optimize) |"
    )
    print("|---|---:|---:|---|---|---|")
    for row in rows:
        out = results[row.name]
        seconds = (
            f"{statistics.mean(out['seconds']):.1f}"
            if row.kind not in ("content", "style")
            else "-"
        )
        print(
            f"| {row.name} | {row.size} | {seconds} | {_fmt(out['ssim'])} | {_fmt(out['style'])} "
            f"| {_fmt(out['gram'])} |"
        )
    for name, per_pair in curves.items():
        print(f"\nTime to quality, {name} (mean over pairs, scored at every emitted iterate):\n")
        print("| step | seconds | SSIM | style: Magenta | style: Gram distance |")
        print("|---:|---:|---:|---:|---:|")
        for points in zip(*per_pair):
            step = points[0][0]
            print(
                f"| {step} | {statistics.mean(p[1] for p in points):.1f} "
                f"| {statistics.mean(p[2] for p in points):.3f} "
                f"| {statistics.mean(p[3] for p in points):.3f} "
                f"| {statistics.mean(p[4] for p in points):.3f} |"
            )
    print("\nHow each style judge ranks the methods' runs (mean over the pairs, closest first):\n")
    print("| judge | closest | ranking |")
    print("|---|---|---|")
    for judge, best, figures in verdicts(results):
        print(f"| {judge} | {best} | {figures} |")
    print("\n| target | met | figures |")
    print("|---|---|---|")
    for target, met, figures in checks:
        print(f"| {target} | {'yes' if met else 'NO'} | {figures} |")


def warm_up(content: np.ndarray, style: np.ndarray) -> None:
    """Weights loaded and caches filled before the first timed row (64 px, 2 steps)."""
    import napari_nst

    small = Row("warm-up", "reference", size=64, overrides=(("steps", 2),))
    napari_nst.stylize(content, style, _settings(small, 2), method="predict")
    napari_nst.stylize(content, style, _settings(small, 2))
    _run_plain(_settings(small, 2), content, style)


GROUPS = ("reference", "size", "style_strength", "content_weight", "configuration")


def measure(
    pairs, size: int, sizes: tuple, steps, floor, emit_every: int, out_dir: Path, groups=GROUPS
) -> dict:
    """The rows of ``groups`` on every pair: the report's raw material (per-pair lists, with
    the pairs each row ran on), montages written where their rows ran."""
    rows = [row for row in make_rows(size, sizes, steps, floor) if row.group in groups]
    warm_up(*(load_rgb(name) for name in pairs[0]))
    runs: dict = {}  # rows that share settings (strength 1 = the defaults) run once
    load = LoadLog()
    outcomes = {row.name: Outcome() for row in rows}
    strips = []
    for content_name, style_name in pairs:
        content, style = load_rgb(content_name), load_rgb(style_name)
        judge = Judge(content, style)
        finals = {}
        for row in rows:
            key = (content_name, style_name, row.key)
            if key not in runs:
                runs[key] = run_row(row, content, style, judge, emit_every)
                load.sample()
            image, seconds, curve = runs[key]
            finals[row.name] = image
            out = outcomes[row.name]
            ssim, style_score, gram = judge.all_scores(image)
            out.ssim.append(ssim)
            out.style.append(style_score)
            out.gram.append(gram)
            out.seconds.append(seconds)
            if row.curve:
                out.curves.append(curve)
            print(
                f"{content_name} x {style_name} | {row.name}: SSIM {ssim:.3f} "
                f"style {style_score:.3f} gram {gram:.3f} {seconds:.1f} s",
                flush=True,
            )
        stem = f"{Path(content_name).stem}_x_{Path(style_name).stem}"
        if {"predict", f"defaults, {size} px"} <= set(finals):
            save_strip(
                [content, style, finals["predict"], finals[f"defaults, {size} px"]],
                out_dir / f"{stem}.png",
            )
            strips.append(str(out_dir / f"{stem}.png"))
        if all(f"style_strength {v:g}" in finals for v in STRENGTHS):
            save_strip(
                [finals[f"style_strength {v:g}"] for v in STRENGTHS],
                out_dir / f"{stem}_strength.png",
            )
    return {
        "pairs": [list(p) for p in pairs],
        "size": size,
        "sizes": list(sizes),
        "steps": steps,
        "floor": floor,
        "strips": strips,
        "load": load.samples,
        "rows": {
            row.name: {
                "pairs": [list(p) for p in pairs],
                "ssim": outcomes[row.name].ssim,
                "style": outcomes[row.name].style,
                "gram": outcomes[row.name].gram,
                "seconds": outcomes[row.name].seconds,
                "size": row.size,
                "settings": dict(row.overrides),
            }
            for row in rows
        },
        "curves": {row.name: outcomes[row.name].curves for row in rows if row.curve},
    }


def merge(parts: list[dict]) -> dict:
    """Runs of the rows on different pairs (and row groups), as if one run had made them: each
    row's figures in the order of ``PAIRS``; every row must have run on the same pairs, once."""
    first = parts[0]
    merged = {k: first[k] for k in ("size", "sizes", "steps", "floor")}
    if any(part[k] != first[k] for part in parts for k in merged):
        raise SystemExit("the parts were not run with the same sizes and steps")
    order = [list(p) for p in PAIRS]
    per_row: dict = {}  # {row: {pair index: (ssim, style, gram, seconds, curve or None)}}
    meta: dict = {}
    for part in parts:
        for name, row in part["rows"].items():
            meta.setdefault(name, {k: row[k] for k in ("size", "settings")})
            curves = part["curves"].get(name)
            for i, pair in enumerate(row["pairs"]):
                index = order.index(pair)
                if index in per_row.setdefault(name, {}):
                    raise SystemExit(f"{name!r} ran twice on {pair}")
                per_row[name][index] = (
                    row["ssim"][i],
                    row["style"][i],
                    row["gram"][i],
                    row["seconds"][i],
                    None if curves is None else curves[i],
                )
    names = [
        row.name
        for row in make_rows(
            merged["size"], tuple(merged["sizes"]), merged["steps"], merged["floor"]
        )
    ]
    covered = {name: sorted(per_row.get(name, {})) for name in names}
    indices = covered[names[0]]
    if any(c != indices for c in covered.values()):
        raise SystemExit(f"the rows ran on different pairs: {covered}")
    merged["pairs"] = [order[i] for i in indices]
    merged["rows"], merged["curves"] = {}, {}
    for name in names:
        values = [per_row[name][i] for i in indices]
        merged["rows"][name] = {
            "pairs": merged["pairs"],
            **meta[name],
            **{
                score: [v[k] for v in values]
                for k, score in enumerate(("ssim", "style", "gram", "seconds"))
            },
        }
        if values[0][4] is not None:
            merged["curves"][name] = [v[4] for v in values]
    merged["load"] = [v for part in parts for v in part.get("load", [])]
    strips = {Path(p).name: p for part in parts for p in part["strips"]}
    merged["strips"] = [
        strips[n]
        for n in (f"{Path(c).stem}_x_{Path(s).stem}.png" for c, s in merged["pairs"])
        if n in strips
    ]
    return merged


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one pair, tiny sizes, 6 steps")
    parser.add_argument(
        "--pairs", default=None, help="comma-separated indices into the four pairs (default: all)"
    )
    parser.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help=f"comma-separated row groups to run (default: all: {','.join(GROUPS)})",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="print the tables of these runs' JSON files together (no runs)",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "quality", help="directory for the montages"
    )
    parser.add_argument(
        "--montage",
        type=Path,
        default=None,
        help="also write the pairs' montages stacked into this file "
        "(the README's docs/quality_montage.jpg)",
    )
    parser.add_argument("--json", type=Path, default=HERE / "quality_results.json")
    args = parser.parse_args(argv)
    if not DISTILLED_FILE.is_file() or not SHARED_IMAGES.is_dir():
        raise SystemExit(f"needs ../shared beside the repository ({DISTILLED_FILE})")

    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        report = merge(parts)
        report["smoke"] = any(part.get("smoke") for part in parts)
    else:
        if args.smoke:
            pairs, size, sizes, steps, floor, emit_every = PAIRS[:1], 96, (64, 96, 128), 6, 96, 2
        else:
            pairs, size, sizes, steps, floor, emit_every = (
                PAIRS,
                512,
                (256, 512, 1024),
                None,
                None,
                5,
            )
        if args.pairs is not None:
            pairs = tuple(PAIRS[int(i)] for i in args.pairs.split(","))
        args.out.mkdir(parents=True, exist_ok=True)
        groups = tuple(args.groups.split(","))
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise SystemExit(f"unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
        report = measure(pairs, size, sizes, steps, floor, emit_every, args.out, groups)
        report["smoke"] = args.smoke
        if set(groups) != set(GROUPS):  # a part: its figures, for --merge
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))
            print(f"a part (groups {', '.join(groups)}); JSON in {args.json}")
            return report
    strips = [Path(p) for p in report["strips"]]
    if not args.merge:
        stack_strips(strips, args.out / "overview.jpg")
    if args.montage:
        stack_strips(strips, args.montage)
    size, sizes = report["size"], tuple(report["sizes"])
    rows = make_rows(size, sizes, report["steps"], report["floor"])
    checks = check_targets(report["rows"], size, sizes)
    print_report(rows, report["rows"], report["pairs"], checks, report["curves"])
    load = LoadLog()
    load.samples = report.get("load", [])
    print(f"\n{load.line()}")
    report["targets"] = [{"target": t, "met": m, "figures": f} for t, m, f in checks]
    report["verdicts"] = [
        {"judge": j, "closest": b, "figures": f} for j, b, f in verdicts(report["rows"])
    ]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nmontages in {args.out}; JSON in {args.json}")
    return report


if __name__ == "__main__":
    main()
