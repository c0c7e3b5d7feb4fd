"""Time to quality by method and start: content kept and two style scores against seconds, for
predict, universal, and optimize from each start, next to a plain implementation (the PyTorch
tutorial's, ``plain_reference.py``) run in the same process on the same objective. Prints
markdown tables, the targets of the default run, writes a plot and JSON.

    python benchmarks/bench_time_quality.py                   # four pairs, 512 px (one process)
    python benchmarks/bench_time_quality.py --pairs 0 --json t0.json   # one pair (0-3) of them
    python benchmarks/bench_time_quality.py --merge t0.json t1.json t2.json t3.json \
        --json benchmarks/time_quality_results.json        # the tables of runs made pair by pair
    python benchmarks/bench_time_quality.py --smoke           # one pair, 96 px, a few steps

Every optimize row is on the distilled VGG-19 on the CPU and changes the defaults only where it
says (``init``, ``coarse_to_fine``, ``min_working_size``, ``steps``, ``emit_every``). Seconds are
wall time from the call (the start image of ``init="predict"`` and the style targets included)
to each emitted iterate; images are scored after the run, so scoring is not timed. The scores
are ``quality.py``'s: SSIM of the luminance at 128 px (content kept), cosine similarity of
Magenta style embeddings (style, higher = closer; it favours predict, which is conditioned on
that embedding) and the Gram-matrix distance on the distilled VGG-19 (lower = closer; what
optimize minimises, so it favours optimize).

The default run's seconds are the median of 3 runs. Like for like: the steps alone,
napari-nst's default 20 L-BFGS steps and the plain implementation's 20 evaluations, both from
the same start (predict's result, computed once and not timed), in float32 for both and in
napari-nst's own precision (``auto``: bfloat16 VGG passes on CPUs with native bf16) next to
the plain's float32, the three interleaved 3 times (medians).

Targets (issue 29): the default run at 512 px in at most 6 s, at 256 px in at most half of that,
with mean SSIM and Magenta style score no worse than the previous defaults' (300 coarse-to-fine
steps from the content, 512 px floor), measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bench_quality import PAIRS
from quality import DISTILLED_FILE, HERE, Judge, LoadLog, load_rgb

PREVIOUS_LABEL = "optimize from content, coarse to fine, 512 px floor (previous default)"
TARGET_SECONDS_512 = 6.0
SCORES = ("ssim", "style", "gram")
PLOT = HERE.parent / "docs" / "time_quality.png"


@dataclass(frozen=True)
class Row:
    label: str
    kind: str  # optimize | predict | universal | plain
    overrides: tuple = ()  # settings changed from the defaults
    steps: int = 0  # optimize and plain: the steps of the curve
    every: int = 5  # an iterate scored every N steps


@dataclass
class Curve:
    """Per pair: [(step, seconds, ssim, style, gram), ...]."""

    pairs: list = field(default_factory=list)

    def mean(self) -> list[tuple[int, float, float, float]]:
        """The points every pair has, averaged over the pairs."""
        length = min(len(p) for p in self.pairs)
        return [
            (
                self.pairs[0][i][0],
                *(statistics.mean(p[i][k] for p in self.pairs) for k in (1, 2, 3, 4)),
            )
            for i in range(length)
        ]


def make_rows(steps_scale: float = 1.0) -> list[Row]:
    def n(steps):
        return max(2, round(steps * steps_scale))

    return [
        Row("predict", "predict"),
        Row("universal", "universal"),
        Row("optimize from predict (the default)", "optimize", (("init", "predict"),), n(60)),
        Row("optimize from universal", "optimize", (("init", "universal"),), n(60)),
        Row("optimize from content, full size", "optimize", (("init", "content"),), n(100), 10),
        Row(
            PREVIOUS_LABEL,
            "optimize",
            (("init", "content"), ("coarse_to_fine", True), ("min_working_size", 512)),
            n(300),
            25,
        ),
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


def _run_plain(content, style, size: int, steps: int, every: int, start_image=None):
    """The tutorial's implementation at full size from the content (or ``start_image``, an
    (H, W, 3) image in [0, 1]), a copy of its image kept every ``every`` evaluations (the copy's
    time is left out)."""
    import plain_reference
    import torch

    from napari_nst.engine.images import prepare_image, working_shape
    from napari_nst.engine.tensors import to_image, to_tensor
    from napari_nst.engine.vgg import load_features

    features, _ = load_features("vgg19-distilled", DISTILLED_FILE)
    c, s = prepare_image(content).rgb, prepare_image(style).rgb
    cpu = torch.device("cpu")
    start = time.perf_counter()
    shape = working_shape(*c.shape[:2], size)
    content_t = to_tensor(c, shape, cpu).contiguous()
    style_t = to_tensor(s, working_shape(*s.shape[:2], size), cpu).contiguous()
    image = (content_t if start_image is None else to_tensor(start_image, shape, cpu)).clone()
    image = image.contiguous()
    points, paused = [], [0.0]

    def on_step(step, _loss):
        if step % every == 0:
            copied = time.perf_counter()
            points.append((step, copied - start - paused[0], to_image(image.detach().clamp(0, 1))))
            paused[0] += time.perf_counter() - copied

    plain_reference.run_style_transfer(
        features, content_t, style_t, image, num_steps=steps, on_step=on_step
    )
    return points


def plain_seconds(content, style, size: int, steps: int, start_image=None) -> float:
    """Seconds of the plain implementation for ``steps`` evaluations (nothing kept)."""
    return _run_plain(content, style, size, steps, steps, start_image)[-1][1]


def default_run(content, style, size: int, repeats: int = 1) -> tuple[float, np.ndarray]:
    """The default optimize run, as a user starts it: the median seconds of ``repeats`` runs
    (the machine is shared: the median is less disturbed than one run) and the result."""
    import napari_nst

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        image = napari_nst.stylize(content, style, _settings(size))
        times.append(time.perf_counter() - start)
    return statistics.median(times), image


def steps_alone(content, style, size: int, repeats: int = 1) -> dict:
    """Like for like: the default's steps from one start image (predict's result, computed once
    and not timed), napari-nst in float32 and in its own precision, and the plain (float32);
    the three interleaved ``repeats`` times, the median seconds of each."""
    import napari_nst

    start_image = napari_nst.stylize(content, style, _settings(size), method="predict")
    steps = _settings(size).steps
    times: dict = {"float32": [], "auto": [], "plain": []}
    for _ in range(repeats):
        for key in ("float32", "auto"):
            settings = _settings(size, init_image=start_image, precision=key)
            begin = time.perf_counter()
            napari_nst.stylize(content, style, settings)
            times[key].append(time.perf_counter() - begin)
        times["plain"].append(plain_seconds(content, style, size, steps, start_image))
    return {key: statistics.median(values) for key, values in times.items()}


def warm_up(content, style) -> None:
    """Load every file and fill the caches once (a user's first run also downloads weights)."""
    import napari_nst

    small = 64
    for method in ("predict", "universal"):
        napari_nst.stylize(content, style, _settings(small), method=method)
    napari_nst.stylize(content, style, _settings(small, steps=2))
    napari_nst.stylize(content, style, _settings(small, steps=2, precision="float32"))
    plain_seconds(content, style, small, 2)


def plot(curves: dict, defaults: dict, previous: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(17, 6.2), constrained_layout=True)
    for label, points in curves.items():
        seconds = [p[1] for p in points]
        for axis, k in zip(axes, (2, 3, 4)):
            values = [p[k] for p in points]
            if len(points) == 1:
                axis.plot(seconds, values, "D", markersize=9, label=label)
            else:
                axis.plot(seconds, values, "-o", markersize=3, label=label)
    for (size, outcome), marker in zip(defaults.items(), ("*", "P")):
        for axis, k in zip(axes, SCORES):
            axis.plot(
                [outcome["seconds"]],
                [outcome[k]],
                marker,
                color="black",
                markersize=14,
                label=f"the default run, {size} px" if k == "ssim" else None,
            )
    for axis, k, title in zip(
        axes,
        SCORES,
        (
            "content kept (SSIM to the content, 128 px)",
            "style: Magenta embedding cosine (higher = closer)",
            "style: VGG Gram distance (lower = closer)",
        ),
    ):
        axis.axhline(previous[k], color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("seconds (2 CPU cores, distilled VGG-19, mean of the pairs)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].set_ylim(0.95, 0.995)
    figure.legend(
        *axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=9
    )
    figure.suptitle(
        "Time to quality by method and start (dotted: the previous defaults' "
        "final scores, same run)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def measure(pairs, size: int, small: int, steps_scale: float, repeats: int = 3) -> dict:
    """Every row and the default run on every pair: per-pair lists (the report's raw material)."""
    images = [(load_rgb(c), load_rgb(s)) for c, s in pairs]
    judges = [Judge(c, s) for c, s in images]
    warm_up(*images[0])

    rows = make_rows(steps_scale)
    load = LoadLog()
    curves = {row.label: [] for row in rows}
    defaults = {
        str(s): {k: [] for k in ("seconds", *SCORES, "float32_s", "auto_s", "plain_s")}
        for s in (size, small)
    }
    for (content, style), judge in zip(images, judges):
        for row in rows:
            points = run_row(row, content, style, size)
            load.sample()
            curves[row.label].append(
                [(step, seconds, *judge.all_scores(image)) for step, seconds, image in points]
            )
        for s, outcome in defaults.items():
            seconds, image = default_run(content, style, int(s), repeats)
            load.sample()
            for k, v in zip(("seconds", *SCORES), (seconds, *judge.all_scores(image))):
                outcome[k].append(v)
            for k, v in steps_alone(content, style, int(s), repeats).items():
                outcome[f"{k}_s"].append(v)
            load.sample()
    return {
        "size": size,
        "small": small,
        "pairs": [list(p) for p in pairs],
        "per_pair": {"curves": curves, "defaults": defaults},
        "load": load.samples,
        "repeats": repeats,
    }


def merge(parts: list[dict]) -> dict:
    """Runs of the same rows on different pairs, as if one run had made them."""
    first = parts[0]
    for part in parts:
        if (part["size"], part["small"]) != (first["size"], first["small"]) or list(
            part["per_pair"]["curves"]
        ) != list(first["per_pair"]["curves"]):
            raise SystemExit("the parts were not run with the same rows and sizes")
    curves = {
        label: [c for part in parts for c in part["per_pair"]["curves"][label]]
        for label in first["per_pair"]["curves"]
    }
    defaults = {
        s: {k: [v for part in parts for v in part["per_pair"]["defaults"][s][k]] for k in values}
        for s, values in first["per_pair"]["defaults"].items()
    }
    return {
        "size": first["size"],
        "small": first["small"],
        "pairs": [p for part in parts for p in part["pairs"]],
        "per_pair": {"curves": curves, "defaults": defaults},
        "load": [v for part in parts for v in part.get("load", [])],
        "repeats": first.get("repeats", 1),
    }


def summarise(raw: dict) -> tuple[dict, dict]:
    """(mean curve per row, mean of the default run's figures per size)."""
    means = {label: Curve(pairs).mean() for label, pairs in raw["per_pair"]["curves"].items()}
    summary = {
        int(s): {k: statistics.mean(v) for k, v in outcome.items()}
        | {"ssim_min": min(outcome["ssim"])}
        for s, outcome in raw["per_pair"]["defaults"].items()
    }
    return means, summary


def main() -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny and short: keeps it working")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--pairs", default=None, help="comma-separated indices into the four pairs (default: all)"
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="report these runs' JSON files together (no runs)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help=f"where the plot goes (default: {PLOT.relative_to(HERE.parent)} for "
        "a run of all pairs or a merge, benchmarks/results/ otherwise)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    if args.merge:
        raw = merge([json.loads(path.read_text()) for path in args.merge])
    else:
        size = 96 if args.smoke else 512
        small = 64 if args.smoke else 256
        pairs = PAIRS[:1] if args.smoke else PAIRS
        if args.pairs is not None:
            pairs = tuple(PAIRS[int(i)] for i in args.pairs.split(","))
        raw = measure(pairs, size, small, 0.1 if args.smoke else 1.0, 1 if args.smoke else 3)
    means, summary = summarise(raw)
    size, small = raw["size"], raw["small"]
    previous = dict(zip(("ssim", "style", "gram"), means[PREVIOUS_LABEL][-1][2:]))
    report(means, summary, size, small, previous, raw.get("repeats", 1))
    load = LoadLog()
    load.samples = raw.get("load", [])
    print(f"\n{load.line()}")
    whole = args.merge or (not args.smoke and args.pairs is None)
    plot_path = args.plot or (
        PLOT
        if whole
        else HERE
        / "results"
        / ("time_quality_smoke.png" if args.smoke else "time_quality_part.png")
    )
    plot(means, summary, previous, plot_path)
    results = raw | {
        "curves": means,
        "defaults": {str(s): v for s, v in summary.items()},
        "previous_defaults": previous,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def _seconds_to_reach(
    points, ssim: float, style: float | None = None, gram: float | None = None
) -> float | None:
    """The first seconds at which a curve holds at least the SSIM and the Magenta style score
    (or at most the Gram distance), or None."""
    for _, seconds, s1, s2, s3 in points:
        if s1 >= ssim and (style is None or s2 >= style) and (gram is None or s3 <= gram):
            return seconds
    return None


def report(
    means: dict, summary: dict, size: int, small: int, previous: dict, repeats: int = 1
) -> None:
    print(f"## Time to quality at {size} px (mean over the pairs)\n")
    header = (
        "| step | seconds | SSIM | style: Magenta | style: Gram distance |\n"
        "|---:|---:|---:|---:|---:|"
    )
    for label, points in means.items():
        print(f"### {label}\n\n{header}")
        for step, seconds, ssim, style, gram in points:
            print(f"| {step} | {seconds:.2f} | {ssim:.3f} | {style:.4f} | {gram:.4f} |")
        print()
    default_steps = _settings(size).steps
    print(
        f"### Summary: each row at step {default_steps} (the default's steps) and at its "
        "last step\n"
    )
    print(
        "| method and start | step | seconds | SSIM | style: Magenta | style: Gram distance |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for label, points in means.items():
        chosen = [p for p in points if p[0] == default_steps and p is not points[-1]]
        for step, seconds, ssim, style, gram in chosen + [points[-1]]:
            print(f"| {label} | {step} | {seconds:.2f} | {ssim:.3f} | {style:.4f} | {gram:.4f} |")
    big, little = summary[size], summary[small]
    print(
        f"\n## The default run ({default_steps} steps from predict's result, full size; "
        f"seconds: the median of {repeats} runs)\n"
    )
    print(
        "| size | seconds | SSIM (min) | style: Magenta | style: Gram distance |\n"
        "|---:|---:|---|---:|---:|"
    )
    for s in (size, small):
        o = summary[s]
        print(
            f"| {s} | {o['seconds']:.2f} | {o['ssim']:.3f} ({o['ssim_min']:.3f}) | "
            f"{o['style']:.4f} | {o['gram']:.4f} |"
        )
    print(
        f"\n## The {default_steps} steps alone, like for like (the same start image: "
        f"predict's result, not timed; medians of {repeats} interleaved runs)\n"
    )
    print(
        "| size | napari-nst float32 (s) | plain float32 (s) | ratio, float32 to float32 | "
        "napari-nst precision auto (s) | ratio, auto to plain float32 |\n"
        "|---:|---:|---:|---:|---:|---:|"
    )
    for s in (size, small):
        o = summary[s]
        print(
            f"| {s} | {o['float32_s']:.2f} | {o['plain_s']:.2f} | "
            f"{o['float32_s'] / o['plain_s']:.2f}x | {o['auto_s']:.2f} | "
            f"{o['auto_s'] / o['plain_s']:.2f}x |"
        )
    print("\nSeconds each row needs to reach the default run's quality:\n")
    for label, points in means.items():
        seconds = (
            _seconds_to_reach(points, big["ssim"], style=big["style"] - 0.0005),
            _seconds_to_reach(points, big["ssim"], gram=big["gram"] + 0.002),
        )
        shown = ["not within the row's steps" if v is None else f"{v:.2f} s" for v in seconds]
        print(
            f"- {label}: SSIM and Magenta style (within 0.0005) {shown[0]}; SSIM and Gram "
            f"distance (within 0.002) {shown[1]}"
        )
    print("\n## Targets (issue 29)\n\n| target | met | figures |\n|---|---|---|")
    checks = [
        (
            f"default at {size} px in at most {TARGET_SECONDS_512:g} s",
            big["seconds"] <= TARGET_SECONDS_512,
            f"{big['seconds']:.2f} s",
        ),
        (
            f"default at {small} px in at most half the {size}-px time",
            little["seconds"] <= big["seconds"] / 2,
            f"{little['seconds']:.2f} s vs {big['seconds'] / 2:.2f} s",
        ),
        (
            "SSIM no worse than the previous defaults' (same run)",
            big["ssim"] >= previous["ssim"],
            f"{big['ssim']:.3f} vs {previous['ssim']:.3f}",
        ),
        (
            "Magenta style no worse than the previous defaults' (same run)",
            round(big["style"], 3) >= round(previous["style"], 3),
            f"{big['style']:.4f} vs {previous['style']:.4f}",
        ),
        (
            f"{small} px and {size} px look alike: SSIM within 0.08, Magenta style within 0.01",
            abs(big["ssim"] - little["ssim"]) <= 0.08
            and abs(big["style"] - little["style"]) <= 0.01,
            f"SSIM {little['ssim']:.3f} vs {big['ssim']:.3f}, style {little['style']:.4f} vs "
            f"{big['style']:.4f}",
        ),
    ]
    for name, met, figures in checks:
        print(f"| {name} | {'yes' if met else 'NO'} | {figures} |")
    print(
        f"\n(the previous defaults, same run: SSIM {previous['ssim']:.3f}, Magenta style "
        f"{previous['style']:.4f}, Gram distance {previous['gram']:.4f})"
    )


if __name__ == "__main__":
    main()
