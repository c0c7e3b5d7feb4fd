"""Latency and peak memory of arbitrary-style prediction (torch) against ai-edge-litert running the
same Magenta int8 TFLite files in the same process, printed as a markdown table.

    NAPARI_NST_WEIGHTS_DIR=../shared/weights python benchmarks/bench_predict.py
    NAPARI_NST_WEIGHTS_DIR=../shared/weights python benchmarks/bench_predict.py --large 4096
    NAPARI_NST_WEIGHTS_DIR=../shared/weights python benchmarks/bench_predict.py --parity

The reference transformer only runs at its export size, 384 x 384: ``resize_tensor_input`` is
accepted but its upsampling layers have constant output sizes, so it still returns 384 x 384.
The comparison is therefore per pixel: torch at N x N against the reference at 384 x 384, both
timed alternately in the same run (the median of ``--repeats`` runs each), so that both see the
same machine load.

Peak memory is measured in a fresh process per row (so that memory cached by the allocator from
earlier calls does not hide it): the growth of the peak resident set (VmHWM) during one render
call, above the resident set with the models and the input image loaded; the output array is
included. Linux only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from memory import proc_status

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXPORT_SIZE = 384


def measure_peak(fn):
    """(result, seconds, peak bytes above the resident set before the call)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = proc_status("VmRSS")
    except OSError:
        before = None
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = proc_status("VmHWM") - before if before is not None else float("nan")
    return result, seconds, peak


def peak_in_fresh_process(size: int, tile: int, threads: int) -> tuple[float, float]:
    """(seconds, peak bytes) of one render of a size x size image in a new interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--_peak", str(size), str(tile), "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, peak = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(peak)


def _peak_child(size: int, tile: int) -> None:
    import torch

    from napari_nst.engine.methods.predict.magenta_weights import load_model
    from napari_nst.engine.methods.predict.renderer import render
    from napari_nst.engine.methods.predict.style_embedding import embed

    embedding = embed(load_model("predictor"), load_rgb("starry_night.jpg", 256))
    transformer = load_model("transformer")
    content = load_rgb("tubingen.jpg", size)
    with torch.inference_mode():
        _, seconds, peak = measure_peak(
            lambda: render(transformer, content, embedding, tile_size=tile)
        )
    print(seconds, peak)


def parity(predictor, transformer, predictor_file, transformer_file, threads: int) -> None:
    """Absolute differences to ai-edge-litert: the embedding of each style image (256²) and the
    stylised tubingen.jpg (384²), with the reference's embedding (the transformer alone) and
    with torch's own (the whole pipeline)."""
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from napari_nst.engine.methods.predict.renderer import render

    def interpreter(path):
        runtime = Interpreter(model_path=str(path), num_threads=threads)
        runtime.allocate_tensors()
        return runtime, {d["name"]: d["index"] for d in runtime.get_input_details()}

    predictor_rt, p_in = interpreter(predictor_file)
    transfer_rt, t_in = interpreter(transformer_file)
    content = load_rgb("tubingen.jpg", EXPORT_SIZE)
    print(
        "\n| style | embedding max / mean abs diff | output, same embedding: max / mean / p99 "
        "| output, whole pipeline: max / mean / p99 |\n|---|---|---|---|"
    )
    for name in ("starry_night.jpg", "the_scream.jpg", "woman-with-hat-matisse.jpg"):
        style = load_rgb(name, 256)
        predictor_rt.set_tensor(p_in["style_image"], style[None])
        predictor_rt.invoke()
        reference = predictor_rt.get_tensor(predictor_rt.get_output_details()[0]["index"])
        with torch.inference_mode():
            ours = predictor(torch.from_numpy(style).permute(2, 0, 1)[None])
        e_diff = np.abs(ours.flatten().numpy() - reference.flatten())
        transfer_rt.set_tensor(t_in["content_image"], content[None])
        transfer_rt.set_tensor(t_in["mobilenet_conv/Conv/BiasAdd"], reference.reshape(1, 1, 1, -1))
        transfer_rt.invoke()
        expected = transfer_rt.get_tensor(transfer_rt.get_output_details()[0]["index"])[0]
        cells = []
        for embedding in (torch.from_numpy(reference.reshape(1, -1, 1, 1)), ours):
            diff = np.abs(render(transformer, content, embedding) - expected)
            cells.append(f"{diff.max():.3f} / {diff.mean():.4f} / {np.percentile(diff, 99):.3f}")
        print(f"| {name} | {e_diff.max():.4f} / {e_diff.mean():.4f} | {cells[0]} | {cells[1]} |")


def load_rgb(name: str, size: int) -> np.ndarray:
    from PIL import Image

    path = SHARED / "images" / name
    if not path.is_file():
        sys.exit(f"{path} is missing: the benchmark needs ../shared/images beside the repository")
    with Image.open(path) as image:
        image = image.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.float32) / 255.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch and litert threads")
    parser.add_argument(
        "--large",
        type=int,
        default=0,
        help="also render an N x N image tiled (e.g. 4096) and report its peak memory",
    )
    parser.add_argument("--tile", type=int, default=1024, help="tile size for --large")
    parser.add_argument(
        "--large-untiled",
        action="store_true",
        help="with --large, also render it untiled for comparison",
    )
    parser.add_argument(
        "--parity",
        action="store_true",
        help="also print the differences to the reference on real images",
    )
    parser.add_argument("--_peak", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if not os.environ.get("NAPARI_NST_WEIGHTS_DIR") and (SHARED / "weights").is_dir():
        os.environ["NAPARI_NST_WEIGHTS_DIR"] = str(SHARED / "weights")

    import torch

    torch.set_num_threads(args.threads)
    if args._peak:
        _peak_child(*args._peak)
        return
    from ai_edge_litert.interpreter import Interpreter

    from napari_nst.engine.methods.predict.magenta_weights import load_model
    from napari_nst.engine.methods.predict.renderer import render
    from napari_nst.engine.methods.predict.style_embedding import embed
    from napari_nst.engine.weights import MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER, locate
    from napari_nst.settings import Settings

    predictor = load_model("predictor")
    transformer = load_model("transformer")
    predictor_file, transformer_file = locate(MAGENTA_PREDICTOR), locate(MAGENTA_TRANSFORMER)

    style256 = load_rgb("starry_night.jpg", 256)
    embedding = embed(predictor, style256)
    vector = embedding.flatten().numpy().reshape(1, 1, 1, -1)

    def reference_transfer():
        interpreter = Interpreter(model_path=str(transformer_file), num_threads=args.threads)
        interpreter.allocate_tensors()
        inputs = {d["name"]: d["index"] for d in interpreter.get_input_details()}
        interpreter.set_tensor(inputs["content_image"], load_rgb("tubingen.jpg", EXPORT_SIZE)[None])
        interpreter.set_tensor(inputs["mobilenet_conv/Conv/BiasAdd"], vector)
        interpreter.invoke()
        return interpreter

    transfer_rt, _, transfer_rt_peak = measure_peak(reference_transfer)
    predictor_rt = Interpreter(model_path=str(predictor_file), num_threads=args.threads)
    predictor_rt.allocate_tensors()
    predictor_rt.set_tensor(predictor_rt.get_input_details()[0]["index"], style256[None])

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    print(
        f"torch {torch.__version__}, {args.threads} threads; ai-edge-litert reference with "
        f"{args.threads} threads; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print(
        "| content | torch latency | torch ms/Mpx | torch peak memory | litert 384² latency "
        "| litert ms/Mpx | torch / litert per pixel |"
    )
    print("|---|---|---|---|---|---|---|")

    style_input = (
        torch.from_numpy(style256)
        .permute(2, 0, 1)[None]
        .contiguous(memory_format=torch.channels_last)
    )
    with torch.inference_mode():
        predictor(style_input)
        ours = [timed(lambda: predictor(style_input)) for _ in range(args.repeats)]
    theirs = [timed(predictor_rt.invoke) for _ in range(args.repeats)]
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(
        f"| style predictor 256² | {ours_s * 1e3:.1f} ms | – | – | {theirs_s * 1e3:.1f} ms | – "
        f"| {ours_s / theirs_s:.2f}× (same size) |"
    )

    reference_pixels = EXPORT_SIZE * EXPORT_SIZE
    default_tile = Settings().tile_size
    rows = [(size, 1 << 30, "") for size in args.sizes]
    rows += [
        (size, default_tile, f", tiles of {default_tile} (the default)")
        for size in args.sizes
        if size > default_tile
    ]
    for size, tile, label in rows:
        content = load_rgb("tubingen.jpg", size)
        render(transformer, content, embedding, tile_size=tile)  # warm-up
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternating, so that both see the same machine load
            theirs.append(timed(transfer_rt.invoke))
            ours.append(timed(lambda: render(transformer, content, embedding, tile_size=tile)))
        _, peak = peak_in_fresh_process(size, tile, args.threads)
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        ours_px = ours_s / (size * size) * 1e9  # ms per megapixel
        theirs_px = theirs_s / reference_pixels * 1e9
        print(
            f"| {size}²{label} | {ours_s:.3f} s | {ours_px:.0f} | {peak / 2**20:.0f} MB "
            f"| {theirs_s * 1e3:.1f} ms | {theirs_px:.0f} | {ours_px / theirs_px:.2f}× |"
        )
    print(
        f"\nlitert transformer: {transfer_rt_peak / 2**20:.0f} MB to load, allocate and run once "
        f"at 384²; it returns 384² for any resized input."
    )

    if args.parity:
        parity(predictor, transformer, predictor_file, transformer_file, args.threads)

    if args.large:
        size = args.large
        image_mb = size * size * 12 / 2**20
        configs = [(args.tile, f"tiles of {args.tile}")]
        if args.large_untiled:
            configs.append((1 << 30, "untiled"))
        print(
            f"\n| {size}² | latency | peak memory (output {image_mb:.0f} MB included, input "
            f"{image_mb:.0f} MB not) |\n|---|---|---|"
        )
        for tile, label in configs:
            seconds, peak = peak_in_fresh_process(size, tile, args.threads)
            print(f"| {label} | {seconds:.1f} s | {peak / 2**20:.0f} MB |")


if __name__ == "__main__":
    main()
