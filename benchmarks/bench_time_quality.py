"""Time to quality by method and start: content kept and style score against seconds, for
predict, universal, and optimize from each start, next to a plain implementation (the PyTorch
tutorial's, ``plain_reference.py``) run in the same process on the same objective. Prints
markdown tables, the targets of the default run, writes a plot and JSON.

    python benchmarks/bench_time_quality.py            # four pairs, 512 px (about 12 min, 2 cores)
    python benchmarks/bench_time_quality.py --smoke    # one pair, 96 px, a few steps

Every optimize row is on the distilled VGG-19 on the CPU and changes the defaults only where it
says (``init``, ``coarse_to_fine``, ``min_working_size``, ``steps``, ``emit_every``). Seconds are
wall time from the call (the start image of ``init="predict"`` and the style targets included)
to each emitted iterate; images are scored after the run, so scoring is not timed. The scores
are ``quality.py``'s: SSIM of the luminance at 128 px (content kept), cosine similarity of
Magenta style embeddings (style).

Targets (issue 29): the default run at 512 px in at most 6 s, at 256 px in at most half of that,
with mean SSIM and style score no worse than the previous defaults' (0.639 and 0.987 in
BENCHMARKS.md's quality table: 300 coarse-to-fine steps from the content, 512 px floor).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quality import DISTILLED_FILE, HERE, Judge, load_rgb, smoke_arguments
from bench_quality import PAIRS

PREVIOUS_DEFAULTS = {"ssim": 0.639, "style": 0.987}  # BENCHMARKS.md, quality table, 512 px
TARGET_SECONDS_512 = 6.0
PLOT = HERE.parent / "docs" / "time_quality.png"


@dataclass(frozen=True)
class Row:
    label: str
    kind: str                       # optimize | predict | universal | plain
    overrides: tuple = ()           # settings changed from the defaults
    steps: int = 0                  # optimize and plain: the steps of the curve
    every: int = 5                  # an iterate scored every N steps


@dataclass
class Curve:
    """Per pair: [(step, seconds, ssim, style), ...]."""

    pairs: list = field(default_factory=list)

    def mean(self) -> list[tuple[int, float, float, float]]:
        """The points every pair has, averaged over the pairs."""
        length = min(len(p) for p in self.pairs)
        return [(self.pairs[0][i][0], *(statistics.mean(p[i][k] for p in self.pairs)
                                        for k in (1, 2, 3))) for i in range(length)]


def make_rows(steps_scale: float = 1.0) -> list[Row]:
    def n(steps):
        return max(2, round(steps * steps_scale))

    return [
        Row("predict", "predict"),
        Row("universal", "universal"),
        Row("optimize from predict (the default)", "optimize", (("init", "predict"),), n(60)),
        Row("optimize from universal", "optimize", (("init", "universal"),), n(60)),
        Row("optimize from content, full size", "optimize", (("init", "content"),), n(100), 10),
        Row("optimize from content, coarse to fine, 512 px floor (previous default)", "optimize",
            (("init", "content"), ("coarse_to_fine", True), ("min_working_size", 512)),
            n(300), 25),
        Row("plain reference from content, full size", "plain", (), n(100), 10),
    ]


def _settings(size: int, **changes):
    from napari_nst import Settings

    return Settings(network="vgg19-distilled", device="cpu", size=size, **changes)


def run_row(row: Row, content, style, size: int) -> list[tuple[int, float, np.ndarray]]:
    """[(step, seconds from the call, image)] of one row on one pair (one point for a
    one-pass method)."""
    import napari_nst

    if row.kind in ("predict", "universal"):
        start = time.perf_counter()
        image = napari_nst.stylize(content, style, _settings(size), method=row.kind)
        return [(1, time.perf_counter() - start, image)]
    if row.kind == "plain":
        return _run_plain(content, style, size, row.steps, row.every)
    settings = _settings(size, steps=row.steps, emit_every=row.every, **dict(row.overrides))
    points, start = [], time.perf_counter()
    for iterate in napari_nst.iterate(content, style, settings):
        points.append((iterate.step, time.perf_counter() - start, np.array(iterate.image)))
    return points


def _run_plain(content, style, size: int, steps: int, every: int):
    """The tutorial's implementation from the content at full size, a copy of its image kept
    every ``every`` evaluations (the copy's time is left out)."""
    import plain_reference
    import torch

    from napari_nst.engine.images import prepare_image, working_shape
    from napari_nst.engine.tensors import to_image, to_tensor
    from napari_nst.engine.vgg import load_features

    features, _ = load_features("vgg19-distilled", DISTILLED_FILE)
    c, s = prepare_image(content).rgb, prepare_image(style).rgb
    cpu = torch.device("cpu")
    start = time.perf_counter()
    content_t = to_tensor(c, working_shape(*c.shape[:2], size), cpu).contiguous()
    style_t = to_tensor(s, working_shape(*s.shape[:2], size), cpu).contiguous()
    image = content_t.clone()
    points, paused = [], [0.0]

    def on_step(step, _loss):
        if step % every == 0:
            copied = time.perf_counter()
            points.append((step, copied - start - paused[0],
                           to_image(image.detach().clamp(0, 1))))
            paused[0] += time.perf_counter() - copied

    plain_reference.run_style_transfer(features, content_t, style_t, image, num_steps=steps,
                                       on_step=on_step)
    return points


def plain_seconds(content, style, size: int, steps: int) -> float:
    """Seconds of the plain implementation for ``steps`` evaluations (nothing kept)."""
    return _run_plain(content, style, size, steps, steps)[-1][1]


def default_run(content, style, size: int) -> tuple[float, np.ndarray]:
    """The default optimize run, as a user starts it: seconds and result."""
    import napari_nst

    start = time.perf_counter()
    image = napari_nst.stylize(content, style, _settings(size))
    return time.perf_counter() - start, image


def warm_up(content, style) -> None:
    """Load every file and fill the caches once (a user's first run also downloads weights)."""
    import napari_nst

    small = 64
    for method in ("predict", "universal"):
        napari_nst.stylize(content, style, _settings(small), method=method)
    napari_nst.stylize(content, style, _settings(small, steps=2))
    plain_seconds(content, style, small, 2)


def plot(curves: dict, defaults: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 6.2), constrained_layout=True)
    for label, points in curves.items():
        seconds = [p[1] for p in points]
        for axis, k in zip(axes, (2, 3)):
            values = [p[k] for p in points]
            if len(points) == 1:
                axis.plot(seconds, values, "D", markersize=9, label=label)
            else:
                axis.plot(seconds, values, "-o", markersize=3, label=label)
    for (size, outcome), marker in zip(defaults.items(), ("*", "P")):
        for axis, k in zip(axes, ("ssim", "style")):
            axis.plot([outcome["seconds"]], [outcome[k]], marker, color="black", markersize=14,
                      label=f"the default run, {size} px" if k == "ssim" else None)
    for axis, k, title in zip(axes, ("ssim", "style"),
                              ("content kept (SSIM to the content, 128 px)",
                               "style score (Magenta embedding cosine)")):
        axis.axhline(PREVIOUS_DEFAULTS[k], color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("seconds (2 CPU cores, distilled VGG-19, mean of the pairs)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].set_ylim(0.95, 0.995)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3,
                  fontsize=9)
    figure.suptitle("Time to quality by method and start (dotted: the previous defaults' "
                    "quality)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> dict:
    args = smoke_arguments(__doc__)
    size = 96 if args.smoke else 512
    small = 64 if args.smoke else 256
    pairs = PAIRS[:1] if args.smoke else PAIRS
    images = [(load_rgb(c), load_rgb(s)) for c, s in pairs]
    judges = [Judge(c, s) for c, s in images]
    warm_up(*images[0])

    rows = make_rows(0.1 if args.smoke else 1.0)
    curves = {row.label: Curve() for row in rows}
    defaults = {s: {"seconds": [], "ssim": [], "style": [], "plain_seconds": []}
                for s in (size, small)}
    for (content, style), judge in zip(images, judges):
        for row in rows:
            points = run_row(row, content, style, size)
            curves[row.label].pairs.append([(step, seconds, *judge.scores(image))
                                            for step, seconds, image in points])
        for s, outcome in defaults.items():
            seconds, image = default_run(content, style, s)
            ssim, style_score = judge.scores(image)
            outcome["seconds"].append(seconds)
            outcome["ssim"].append(ssim)
            outcome["style"].append(style_score)
            outcome["plain_seconds"].append(plain_seconds(content, style, s, _settings(s).steps))

    means = {label: curve.mean() for label, curve in curves.items()}
    summary = {s: {k: statistics.mean(v) for k, v in outcome.items()}
               | {"ssim_min": min(outcome["ssim"])} for s, outcome in defaults.items()}
    report(means, summary, size, small)
    plot(means, summary, HERE / "results" / "time_quality_smoke.png" if args.smoke else PLOT)
    results = {"size": size, "pairs": [list(p) for p in pairs], "curves": means,
               "defaults": {str(s): v for s, v in summary.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def _seconds_to_reach(points, ssim: float, style: float) -> float | None:
    """The first seconds at which a curve holds at least both scores, or None."""
    for _, seconds, s1, s2 in points:
        if s1 >= ssim and s2 >= style:
            return seconds
    return None


def report(means: dict, summary: dict, size: int, small: int) -> None:
    print(f"## Time to quality at {size} px (mean over the pairs)\n")
    for label, points in means.items():
        print(f"### {label}\n\n| step | seconds | SSIM | style |\n|---:|---:|---:|---:|")
        for step, seconds, ssim, style in points:
            print(f"| {step} | {seconds:.2f} | {ssim:.3f} | {style:.4f} |")
        print()
    big, little = summary[size], summary[small]
    print("## The default run (20 steps from predict's result, full size)\n")
    print("| size | seconds | SSIM (min) | style | plain implementation, same steps, from the "
          "content (s) | ratio to plain |\n|---:|---:|---|---:|---:|---:|")
    for s in (size, small):
        o = summary[s]
        print(f"| {s} | {o['seconds']:.2f} | {o['ssim']:.3f} ({o['ssim_min']:.3f}) | "
              f"{o['style']:.4f} | {o['plain_seconds']:.2f} | "
              f"{o['seconds'] / o['plain_seconds']:.2f}x |")
    reach = {label: _seconds_to_reach(points, big["ssim"], big["style"] - 0.0005)
             for label, points in means.items()}
    print("\nSeconds each row needs to reach the default run's quality (SSIM and style, style "
          "within 0.0005):\n")
    for label, seconds in reach.items():
        shown = "not within the row's steps" if seconds is None else f"{seconds:.2f} s"
        print(f"- {label}: {shown}")
    print("\n## Targets (issue 29)\n\n| target | met | figures |\n|---|---|---|")
    checks = [
        (f"default at {size} px in at most {TARGET_SECONDS_512:g} s",
         big["seconds"] <= TARGET_SECONDS_512, f"{big['seconds']:.2f} s"),
        (f"default at {small} px in at most half the {size}-px time",
         little["seconds"] <= big["seconds"] / 2,
         f"{little['seconds']:.2f} s vs {big['seconds'] / 2:.2f} s"),
        (f"SSIM no worse than the previous defaults' {PREVIOUS_DEFAULTS['ssim']}",
         big["ssim"] >= PREVIOUS_DEFAULTS["ssim"], f"{big['ssim']:.3f}"),
        (f"style no worse than the previous defaults' {PREVIOUS_DEFAULTS['style']}",
         round(big["style"], 3) >= PREVIOUS_DEFAULTS["style"], f"{big['style']:.4f}"),
        (f"{small} px and {size} px look alike: SSIM within 0.08, style within 0.01",
         abs(big["ssim"] - little["ssim"]) <= 0.08 and abs(big["style"] - little["style"]) <= 0.01,
         f"SSIM {little['ssim']:.3f} vs {big['ssim']:.3f}, style {little['style']:.4f} vs "
         f"{big['style']:.4f}"),
    ]
    for name, met, figures in checks:
        print(f"| {name} | {'yes' if met else 'NO'} | {figures} |")


if __name__ == "__main__":
    main()
