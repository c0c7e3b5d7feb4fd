"""Optimize-method benchmarks: napari-nst against the plain tutorial-style reference and against
this machine's matrix-multiply throughput. Prints markdown tables and writes JSON.

    python benchmarks/run_benchmarks.py                      # full run (about 20 min on 2 cores)
    python benchmarks/run_benchmarks.py --smoke              # one tiny size, two steps: keeps it working

Every measurement runs in its own child process, so that peak resident memory (ru_maxrss) belongs
to that measurement alone. Both implementations get the same seeded random VGG-19, the same images
(``../shared/images``), the same objective and L-BFGS.

* Per step (at each ``--sizes``): seconds per step (median of ``--steps`` after a warm-up step),
  FLOPs of one napari-nst step (VGG forward + backward and the Grams) counted by
  ``torch.utils.flop_counter``, and the GFLOP/s each implementation achieves on that work, against
  a large fp32 matmul measured in the same run; peak RSS.
* Time to quality (at ``--quality-size``): the plain reference runs ``--quality-steps`` L-BFGS
  steps; napari-nst runs its default settings. One evaluator -- the total loss of the project's
  objective on the full-size result -- judges both; the JSON holds both loss curves.
* ``--max-size``: the largest size that stays under 8 GiB (peak RSS of a two-step run plus a full
  L-BFGS history), found by bisection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from napari_nst.engine.methods.optimize.gatys import (
    LBFGS_HISTORY,
)  # napari-nst's L-BFGS history_size

HERE = Path(__file__).resolve().parent
SHARED_IMAGES = HERE.parents[1] / "shared" / "images"
CONTENT, STYLE = "tubingen.jpg", "starry_night.jpg"
GIB = 1024**3


# ----------------------------------------------------------------------------- child measurements


def _images():
    import numpy as np
    from PIL import Image

    return (
        np.asarray(Image.open(SHARED_IMAGES / CONTENT).convert("RGB")),
        np.asarray(Image.open(SHARED_IMAGES / STYLE).convert("RGB")),
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


class Evaluator:
    """The common judge: the project's default objective at ``size``, on a clamped result image
    resized (bicubic) to the full working shape when it is smaller."""

    def __init__(self, content, style, size: int, vgg):
        import torch

        from napari_nst.engine.images import prepare_image, working_shape
        from napari_nst.engine.methods.optimize.gatys import to_tensor
        from napari_nst.engine.methods.optimize.losses import StyleTransferLoss
        from napari_nst.engine.vgg import VGGFeatures
        from napari_nst.settings import Settings

        settings = Settings()
        c, s = prepare_image(content).rgb, prepare_image(style).rgb
        self.shape = working_shape(*c.shape[:2], size)
        # contiguous: at the image's own size to_tensor returns a permuted view, whose clone
        # keeps those strides (L-BFGS needs a flat view of the gradient)
        self.content = to_tensor(c, self.shape, torch.device("cpu")).contiguous()
        self.style = to_tensor(
            s, working_shape(*s.shape[:2], size), torch.device("cpu")
        ).contiguous()
        extractor = VGGFeatures(
            vgg, (*settings.content_layers, *settings.style_layers), pooling=settings.pooling
        )
        self.loss = StyleTransferLoss(
            extractor,
            self.content,
            [self.style],
            content_layers=settings.content_layers,
            style_layers=settings.style_layers,
            content_weight=settings.content_weight,
            style_weight=settings.style_weight,
            tv_weight=settings.tv_weight,
        )

    def __call__(self, image) -> float:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            if not isinstance(image, torch.Tensor):
                image = torch.from_numpy(image).permute(2, 0, 1)[None]
            image = image.clamp(0, 1)
            if tuple(image.shape[-2:]) != tuple(self.shape):
                image = F.interpolate(
                    image, size=self.shape, mode="bicubic", align_corners=False
                ).clamp(0, 1)
            return float(self.loss(image)[0])


def _count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _step_times(stamps: list[float]) -> dict:
    durations = [b - a for a, b in zip(stamps, stamps[1:])][1:]  # drop the warm-up step
    return {
        "s_per_step": statistics.median(durations),
        "min": min(durations),
        "max": max(durations),
        "timed_steps": len(durations),
    }


def _fixed_size_run(content, style, vgg, size: int, steps: int, precision: str = "auto"):
    """napari-nst at one size (no coarse-to-fine, no emitted images before the end): the time
    stamps around each step, and the last iterate."""
    from napari_nst.engine.run import run_steps

    stamps = [time.perf_counter()]
    for last in run_steps(
        content,
        style,
        size=size,
        steps=steps,
        emit_every=100000,
        device="cpu",
        coarse_to_fine=False,
        min_working_size=size,
        vgg_weights=vgg,
        init="content",
        precision=precision,
    ):
        stamps.append(time.perf_counter())
    return stamps, last


def child_step_project(size: int, steps: int, precision: str = "auto") -> dict:
    import torch

    from napari_nst import random_vgg19

    content, style = _images()
    vgg = random_vgg19(0)
    stamps, last = _fixed_size_run(content, style, vgg, size, steps + 1, precision)
    out = _step_times(stamps)
    out["precision"] = last.info["precision"]
    evaluator = Evaluator(content, style, size, vgg)
    image = evaluator.content.clone().requires_grad_(True)
    out["flops"] = _count_flops(lambda: evaluator.loss(image)[0].backward())
    out["peak_rss_mb"] = _peak_rss_mb()
    out["threads"] = torch.get_num_threads()
    return out


def child_step_plain(size: int, steps: int) -> dict:
    import plain_reference as plain

    from napari_nst import random_vgg19

    content, style = _images()
    vgg = random_vgg19(0)
    evaluator = Evaluator(content, style, size, vgg)
    stamps = [time.perf_counter()]
    plain.run_style_transfer(
        vgg,
        evaluator.content,
        evaluator.style,
        evaluator.content.clone(),
        num_steps=steps + 1,
        on_step=lambda step, loss: stamps.append(time.perf_counter()),
    )
    out = _step_times(stamps)
    model, style_losses, content_losses = plain.get_style_model_and_losses(
        vgg, evaluator.style, evaluator.content
    )
    image = evaluator.content.clone().requires_grad_(True)

    def one_step():
        model(image)
        sum(loss.loss for loss in style_losses + content_losses).backward()

    out["flops"] = _count_flops(one_step)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def child_quality_plain(size: int, steps: int) -> dict:
    import plain_reference as plain

    from napari_nst import random_vgg19

    content, style = _images()
    vgg = random_vgg19(0)
    evaluator = Evaluator(content, style, size, vgg)
    curve = []
    start = time.perf_counter()
    result = plain.run_style_transfer(
        vgg,
        evaluator.content,
        evaluator.style,
        evaluator.content.clone(),
        num_steps=steps,
        on_step=lambda step, loss: curve.append((step, time.perf_counter() - start, loss)),
    )
    wall = time.perf_counter() - start
    # the closure's loss is the loss of the image *before* each step: judge the final image too
    return {
        "wall_s": wall,
        "steps": steps,
        "final_loss": evaluator(result.detach()),
        "curve": curve,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_quality_project(size: int, steps: int | None, overrides: dict) -> dict:
    from napari_nst import random_vgg19
    from napari_nst.engine.run import run_steps
    from napari_nst.settings import Settings

    content, style = _images()
    vgg = random_vgg19(0)
    # from the content, as the plain implementation starts (the default predict start reads
    # Magenta's weights, and random VGG weights say nothing of its quality)
    settings = Settings(init="content").replace(
        size=size, device="cpu", vgg_weights=vgg, **overrides
    )
    if steps is not None:
        settings = settings.replace(steps=steps)
    emitted = []
    start = time.perf_counter()
    for it in run_steps(content, style, settings):
        if it.emitted:
            emitted.append((it.step, time.perf_counter() - start, it.image, it.scale))
    wall = time.perf_counter() - start
    evaluator = Evaluator(content, style, size, vgg)  # judged after the clock stopped
    curve = [(step, t, evaluator(image), list(shape)) for step, t, image, shape in emitted]
    return {
        "wall_s": wall,
        "steps": settings.steps,
        "final_loss": curve[-1][2],
        "curve": curve,
        "settings": {
            k: v
            for k, v in settings.to_metadata().items()
            if k
            in (
                "steps",
                "size",
                "coarse_to_fine",
                "min_size",
                "optimizer",
                "emit_every",
                "init",
                "precision",
            )
        },
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_two_steps(size: int) -> dict:
    """Two steps at ``size`` with the defaults (L-BFGS history holds one pair by then)."""
    from napari_nst import random_vgg19

    content, style = _images()
    stamps, _ = _fixed_size_run(content, style, random_vgg19(0), size, 2)
    return {"wall_s": stamps[-1] - stamps[0], "peak_rss_mb": _peak_rss_mb()}


CHILDREN = {
    "step-project": child_step_project,
    "step-plain": child_step_plain,
    "quality-plain": child_quality_plain,
    "quality-project": child_quality_project,
    "two-steps": child_two_steps,
}


def run_child(kind: str, **kwargs) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {kwargs} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- parent


def matmul_gflops(n: int, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n×n by n×n matrix product: the practical limit of this machine."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "commit": commit,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
    }


def lbfgs_history_mb(size: int, history: int) -> float:
    """Memory of a full L-BFGS history at ``size``: two image-sized float32 vectors per pair."""
    from PIL import Image

    from napari_nst.engine.images import working_shape

    with Image.open(SHARED_IMAGES / CONTENT) as image:
        height, width = working_shape(image.height, image.width, size)
    return history * 2 * 3 * height * width * 4 / 2**20


PLAIN_HISTORY = 100  # torch's default history_size


def reach_time(curve, target: float):
    """Seconds at which a curve of (step, t, loss, ...) first reaches ``target`` (None: never)."""
    for point in curve:
        if point[2] <= target:
            return point[1]
    return None


def largest_size_within(limit_mb: float, low: int, high: int, tolerance: int) -> tuple[int, dict]:
    """Bisection over two-step runs: the largest size whose peak RSS stays under ``limit_mb``."""
    best, best_result = low, None
    while high - low > tolerance:
        middle = (low + high) // 2
        result = run_child("two-steps", size=middle)
        result["with_full_history_mb"] = result["peak_rss_mb"] + lbfgs_history_mb(
            middle, LBFGS_HISTORY - 1
        )
        print(
            f"  size {middle}: peak RSS {result['peak_rss_mb']:.0f} MB, "
            f"{result['with_full_history_mb']:.0f} MB with a full L-BFGS history",
            flush=True,
        )
        if result["with_full_history_mb"] <= limit_mb:
            low, best, best_result = middle, middle, result
        else:
            high = middle
    return best, best_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per size (after a warm-up)"
    )
    parser.add_argument("--quality-size", type=int, default=512)
    parser.add_argument("--quality-steps", type=int, default=300)
    parser.add_argument(
        "--max-size",
        action="store_true",
        help="also find the largest size within 8 GiB (a few minutes)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one tiny size and two steps: checks that everything runs, times nothing",
    )
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, kwargs = args.child
        print(json.dumps(CHILDREN[kind](**json.loads(kwargs))))
        return
    if not SHARED_IMAGES.is_dir():
        sys.exit(f"benchmarks need the real images in {SHARED_IMAGES} (../shared beside the repo)")

    quality_overrides: dict = {}
    if args.smoke:
        args.sizes, args.steps, args.quality_size, args.quality_steps = [64], 2, 64, 2
        quality_overrides = {"steps": 2, "min_size": 32, "min_working_size": 64}

    info = machine()
    info["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    info["matmul_gflops"] = matmul_gflops(256 if args.smoke else 4096)
    print(
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; torch {info['torch']} "
        f"({info['torch_threads']} threads), Python {info['python']}, commit {info['commit']}"
    )
    print(f"fp32 matmul: {info['matmul_gflops']:.1f} GFLOP/s\n", flush=True)

    rows = []
    for size in args.sizes:
        project = run_child("step-project", size=size, steps=args.steps)
        project_fp32 = run_child("step-project", size=size, steps=args.steps, precision="float32")
        plain = run_child("step-plain", size=size, steps=args.steps)
        rows.append(
            {
                "size": size,
                "project": project,
                "project_float32": project_fp32,
                "plain": plain,
                "history_mb": {
                    "project": lbfgs_history_mb(size, LBFGS_HISTORY),
                    "plain": lbfgs_history_mb(size, PLAIN_HISTORY),
                },
            }
        )
        print(f"  {size} px done", flush=True)
    matmul = info["matmul_gflops"]
    print(
        f"\n| size | implementation | s/step | vs plain | GFLOP/s | % of fp32 matmul "
        f"| peak RSS ({args.steps + 1} steps) | vs plain | L-BFGS history when full |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        plain = row["plain"]
        for key, label in (
            ("project", f"napari-nst ({row['project']['precision']}, default)"),
            ("project_float32", "napari-nst (float32)"),
            ("plain", "plain reference (float32)"),
        ):
            r = row[key]
            # the same useful work for all three: napari-nst's step (the plain's autograd Gram
            # backward adds a second matmul per style layer, counted in its own "flops")
            gflops = row["project"]["flops"] / r["s_per_step"] / 1e9
            r.update(
                gflops=gflops,
                matmul_fraction=gflops / matmul,
                ratio=r["s_per_step"] / plain["s_per_step"],
                rss_ratio=r["peak_rss_mb"] / plain["peak_rss_mb"],
            )
            history = row["history_mb"]["plain" if key == "plain" else "project"]
            print(
                f"| {row['size']} | {label} | {r['s_per_step']:.3f} | {r['ratio']:.2f}× "
                f"| {gflops:.0f} | {100 * gflops / matmul:.0f} % | {r['peak_rss_mb']:.0f} MB "
                f"| {r['rss_ratio']:.2f}× | {history:.0f} MB |"
            )
        row["ratio"] = row["project"]["ratio"]

    print(f"\ntime to quality at {args.quality_size} px ...", flush=True)
    plain_q = run_child("quality-plain", size=args.quality_size, steps=args.quality_steps)
    project_q = run_child(
        "quality-project", size=args.quality_size, steps=None, overrides=quality_overrides
    )
    target = plain_q["final_loss"]
    best_step, best_time, best_loss = min(plain_q["curve"], key=lambda point: point[2])
    reached = reach_time(project_q["curve"], target)
    reached_best = reach_time(project_q["curve"], best_loss)
    quality = {
        "plain": plain_q,
        "project": project_q,
        "target_loss": target,
        "project_reach_s": reached,
        "reach_ratio": None if reached is None else reached / plain_q["wall_s"],
        "wall_ratio": project_q["wall_s"] / plain_q["wall_s"],
        "plain_best": {"step": best_step, "time_s": best_time, "loss": best_loss},
        "project_reach_plain_best_s": reached_best,
        "plain_reach_project_final_s": reach_time(plain_q["curve"], project_q["final_loss"]),
    }

    def seconds(value):
        return "not reached" if value is None else f"{value:.1f} s"

    def ratio(value):
        return "" if value is None else f"{value / plain_q['wall_s']:.2f}×"

    print(
        f"\n| time to quality, {args.quality_size} px | wall time | vs plain "
        "| final loss (common evaluator) | reaches the plain's final loss | vs plain's wall time "
        "| reaches the plain's best loss |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| plain, {plain_q['steps']} L-BFGS steps | {plain_q['wall_s']:.1f} s | 1.00× "
        f"| {plain_q['final_loss']:.4f} | {plain_q['wall_s']:.1f} s | 1.00× "
        f"| step {best_step}: {best_loss:.4f} at {best_time:.1f} s |"
    )
    print(
        f"| napari-nst defaults | {project_q['wall_s']:.1f} s | {quality['wall_ratio']:.2f}× "
        f"| {project_q['final_loss']:.4f} | {seconds(reached)} | {ratio(reached)} "
        f"| {seconds(reached_best)} |"
    )
    print(
        f"\nnapari-nst defaults: {project_q['settings']}; the plain reaches napari-nst's final "
        f"loss at {seconds(quality['plain_reach_project_final_s'])}"
    )

    largest = None
    if args.max_size:
        print("\nlargest size within 8 GiB (two-step runs) ...", flush=True)
        size, result = largest_size_within(8 * 1024, 1024, 4096, 64)
        largest = {"size": size, **(result or {})}
        print(
            f"largest size within 8 GiB: {size} px (peak RSS {largest.get('peak_rss_mb', 0):.0f} MB "
            f"over two steps, {largest.get('with_full_history_mb', 0):.0f} MB with a full "
            "L-BFGS history)"
        )

    args.json.write_text(
        json.dumps(
            {"machine": info, "steps": rows, "quality": quality, "largest_within_8gib": largest},
            indent=1,
        )
    )
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
